"""invscale: fast, exact multiple-choice scoring for inverse-scaling studies.

From Python (see :mod:`invscale.api`; the ``invscale`` command line runs the same functions):

- ``Scorer(model, dtype=…, device=…, **options)``: a model loaded once; ``.score(data, out=…)``
  gives :class:`Results` (per-example records, the summary, ``.to_pandas()``, ``.save(path)``);
  ``.options(prompts, options)`` gives per-option log-probs.
- ``evaluate(tasks, model, n=…, seeds=…, shots=…, out=…)``: generate, score and summarise tasks;
  with ``cot=ChainOfThought(…)`` (and ``reasoning_tokens=[0, 32, …]``) after a chain of thought.
- ``sweep(data, models, out=…)`` (or ``family=…``) and ``report(run_dir)``: a study across models with
  tables, plots and scaling verdicts; ``compare(run_dir, a, b)``: two of its models, paired.
- ``generate(task, n, seed, shots)``: a seeded task set as a :class:`Dataset`;
  ``as_dataset(data)`` reads any form of data the scorer takes.

The names load on first use, so ``invscale`` itself starts without importing torch.
"""

__all__ = ["Scorer", "Results", "Evaluation", "Report", "Comparison", "Interrupted", "OutOfMemory", "as_dataset",
           "compare", "evaluate", "generate", "report", "sweep", "Dataset", "DataError", "ModelLoadError",
           "ResultsError", "ChainOfThought"]

_HOMES = {"Dataset": "invscale.data", "DataError": "invscale.data", "ModelLoadError": "invscale.models",
          "ResultsError": "invscale.results", "ChainOfThought": "invscale.chain_of_thought"}


def __getattr__(name: str):
    """The API's names, imported when first asked for."""
    if name not in __all__:
        raise AttributeError(f"module 'invscale' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(_HOMES.get(name, "invscale.api")), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
