"""The benchmark's table for the terminal."""

from __future__ import annotations

from rich import box
from rich.table import Table


COLUMNS_LEGEND = ("sec: median seconds of a run; items/s: rows per second; tok/s: unique tokens per second; "
                  "speedup: hf-per-option's time ÷ this one's; ÷floor: time ÷ the FLOP floor (2 × body parameters × "
                  "unique tokens ÷ the measured matrix-product rate); GiB: peak GPU memory; max|Δ|: largest log-prob "
                  "difference from hf-per-option")


def flop_rate(flops_per_second: float) -> str:
    """A FLOP/s figure in the unit that shows it (a CPU's is GFLOP/s, a GPU's TFLOP/s)."""
    if flops_per_second >= 1e12:
        return f"{flops_per_second / 1e12:.1f} TFLOP/s"
    return f"{flops_per_second / 1e9:.1f} GFLOP/s"


def figures_table(figures: dict, title: str) -> Table:
    """One row per method: time, items/s, unique tokens/s, speedup over baseline A, time over the
    FLOP floor, peak GPU memory and the largest log-prob difference from baseline A; the caption
    gives the workload, the floor and what each column means."""
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, caption=(
        f"{figures['items']} items, {figures['unique_tokens']:,} unique of {figures['naive_tokens']:,} naive tokens "
        f"(fewest possible {figures['fewest_tokens']:,}, lm-eval's HF backend {figures['lm_eval_hf_tokens']:,}); "
        f"floor {figures['floor_seconds'] * 1e3:.2f} ms at a measured {flop_rate(figures['peak_tflops'] * 1e12)} "
        f"({figures['dtype']}, {figures['device']}); all methods agree within {figures['tolerance']:g}.\n"
        + COLUMNS_LEGEND))
    for column in ("method", "sec", "items/s", "tok/s", "speedup", "÷floor", "GiB", "max|Δ|"):
        table.add_column(column, justify="left" if column == "method" else "right", no_wrap=True)
    for m in figures["methods"]:
        memory = "—" if m["peak_memory_gib"] is None else f"{m['peak_memory_gib']:.2f}"
        table.add_row(m["method"], f"{m['seconds']:.3f}", f"{m['items_per_s']:,.1f}", f"{m['unique_tokens_per_s']:,.0f}",
                      f"{m['speedup_vs_per_option']:.2f}", f"{m['time_over_floor']:.1f}", memory,
                      f"{m['max_abs_diff_vs_per_option']:.0e}")
    return table
