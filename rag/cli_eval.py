"""The `rag eval` command's two ways of running: one gold file against the current store, or a folder of gold
sets, each in a store of its own (rag/evalsets.py). Scoring lives in rag/evals.py; this is the command's I/O."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer
from rich.text import Text

from rag.cli import err, fail, load_chain, model_errors, out, progress, settings, write_output
from rag.config import Settings


def eval_file(gold: Path, as_json: bool, check: bool, update_baseline: bool, baseline: Path, base: dict,  # type: ignore[type-arg]
               tolerance: float | None, backend: str | None, k: int | None, repeat: int, record: Path | None,
               replay: Path | None, junit_xml: Path | None) -> None:
    """One gold file against the current store."""
    from rag import evals
    from rag.eval_tables import print_eval

    s = settings()
    chain = load_chain(s, backend)
    if (record or replay) and chain.backend == "extractive":
        err.print(f"note: --{'record' if record else 'replay'} has nothing to do: the extractive backend calls no "
                  "model")
        record = replay = None
    if check and base.get("backends", {}).get(chain.backend) is None:  # say so before the long run, not after
        raise fail(f"no baseline for backend {chain.backend} in {baseline}: run with --update-baseline first")
    if k:
        chain.retriever.settings = chain.retriever.settings.model_copy(update={"k": k})
    report = run_gold_file(chain, gold, repeat, record, replay)
    if junit_xml:
        write_output(junit_xml, evals.junit_xml(report, f"rag-eval-{chain.backend}"), "the JUnit report")
    if as_json:
        out.print_json(json.dumps(report.to_json()))
    else:
        print_eval(out, report, chain.backend, time_s=sum(r.timings_ms.get("total", 0) for r in report.items) / 1000)
    tol = tolerance if tolerance is not None else float(base.get("tolerance", 0.02))
    if update_baseline:
        base.setdefault("backends", {})[chain.backend] = dict(report.metrics)
        base.setdefault("tolerance", tol)
        write_output(baseline, json.dumps(base, indent=2) + "\n", "the baseline")
        err.print(f"baseline for {chain.backend} written to {baseline}")
    if check:
        accepted = base["backends"][chain.backend]
        measured = int(report.metrics["n_items"] or 0)
        if accepted.get("n_items") not in (None, measured):
            err.print(f"note: the baseline was measured on {int(accepted['n_items'])} items, this run has "
                      f"{measured}: a metric moves with the items, not only with the code")
        gate({chain.backend: evals.check_against(report.metrics, accepted, tol)}, chain.backend, tol)


def run_gold_file(chain, gold: Path, repeat: int, record: Path | None, replay: Path | None):  # type: ignore[no-untyped-def]
    from rag import evals
    from rag.llm import ModelError, ResponseCache

    try:
        items = evals.load_gold(gold, evals.store_texts(chain.retriever.store))
        if record or replay:
            chain.cache = ResponseCache(record or replay, "record" if record else "replay")  # type: ignore[arg-type]
    except (evals.GoldError, ModelError) as e:
        raise fail(str(e)) from None
    reports = []
    try:
        with model_errors():
            for run in range(repeat):
                with progress(f"eval run {run + 1}/{repeat}") as advance:
                    reports.append(evals.evaluate(chain, items, advance))
    finally:
        if chain.cache:
            chain.cache.save()
    return evals.combine(reports) if repeat > 1 else reports[0]


def gate(failures: dict[str, list[str]], backend: str, tol: float) -> None:
    """Exit 1 with one line per regression; else say the check passed."""
    lines = [f"{where}: {line}" if len(failures) > 1 else line for where, found in failures.items() for line in found]
    if lines:
        for line in lines:
            err.print(Text.assemble(("regression:", "red"), f" {line}"))
        raise typer.Exit(1)
    err.print(Text.assemble(("check passed", "green"), f": no metric below the {backend} baseline minus {tol}"))


def eval_folder(folder: Path, split: str, as_json: bool, check: bool, update_baseline: bool, baseline: Path,
                 base: dict, tolerance: float | None, backend: str | None, k: int | None,  # type: ignore[type-arg]
                 record: Path | None = None, replay: Path | None = None, limit: int | None = None) -> None:
    """Every set of a folder in a store of its own: one row per set, the macro average and the spread. With
    --record / --replay, one file holds the model replies of every set."""
    from rag import evals, evalsets
    from rag.embed import make_embedder
    from rag.eval_tables import print_sets
    from rag.store import StoreError

    s = settings()
    try:
        sets = evalsets.discover(folder)
        embedder = make_embedder(s.embed)
    except evals.GoldError as e:
        raise fail(str(e)) from None
    chosen = resolve_backend_name(s, backend)
    accepted = base.get("sets", {})
    if check and any(accepted.get(g.name, {}).get(split, {}).get(chosen) is None for g in sets):
        missing = [g.name for g in sets if accepted.get(g.name, {}).get(split, {}).get(chosen) is None]
        raise fail(f"no {split} baseline for backend {chosen} in {baseline} for: {', '.join(missing)}; "
                   "run with --update-baseline first")

    cache = response_cache(chosen, record, replay)

    def run_set(gold_set: evalsets.GoldSet, half: str) -> evals.EvalReport:
        with model_errors(), progress(f"eval {gold_set.name} ({half})") as advance:
            return evalsets.run_set(gold_set, half, s, embedder, backend, k, advance, cache=cache, limit=limit)

    try:
        report = evalsets.evaluate_sets(sets, split, run_set)
    except (evals.GoldError, StoreError) as e:
        raise fail(str(e)) from None
    finally:
        if cache:
            cache.save()
    if as_json:
        out.print_json(json.dumps(report.to_json()))
    else:
        print_sets(out, report, chosen, split)
    tol = tolerance if tolerance is not None else float(base.get("tolerance", 0.02))
    if update_baseline:
        for name, r in report.reports.items():
            base.setdefault("sets", {}).setdefault(name, {}).setdefault(split, {})[chosen] = dict(r.metrics)
        base.setdefault("tolerance", tol)
        write_output(baseline, json.dumps(base, indent=2) + "\n", "the baseline")
        err.print(f"{split} baselines of {len(report.reports)} sets for {chosen} written to {baseline}")
    if check:
        gate({name: evals.check_against(r.metrics, accepted[name][split][chosen], tol)
               for name, r in report.reports.items()}, chosen, tol)


def response_cache(backend: str, record: Path | None, replay: Path | None):  # type: ignore[no-untyped-def]
    """The recorded replies of a run (None: the extractive backend calls no model, or neither option was given)."""
    from rag.llm import ModelError, ResponseCache

    if not (record or replay):
        return None
    if backend == "extractive":
        err.print(f"note: --{'record' if record else 'replay'} has nothing to do: the extractive backend calls no "
                  "model")
        return None
    try:
        return ResponseCache(record or replay, "record" if record else "replay")  # type: ignore[arg-type]
    except ModelError as e:
        raise fail(str(e)) from None


def resolve_backend_name(s: Settings, backend: str | None) -> str:
    from rag.config import resolve_backend

    return resolve_backend(backend or s.answer.backend, os.environ)


