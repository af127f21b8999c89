"""Model-family sweeps: score every dataset on every model, then summarise, plot and call the trend."""
