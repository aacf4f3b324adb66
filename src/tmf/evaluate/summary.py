"""The tables of every evaluation job: ``summary.csv`` (one row per run) and ``summary_agg.csv`` (mean ± std over
seeds); columns in docs/file-formats.md. And what a run's tables answer to the study's questions (``study_answers``, by the rule of ``margin``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

from tmf.io import read_json, write_csv
from tmf.plan import ENCODER_BASELINES, TRAINED_BASELINES, is_ssl, split_modal

log = logging.getLogger(__name__)

SUMMARY_KEYS = ("protocol", "method", "test_set", "fraction", "seed", "n_train", "oa", "miou", "kappa",
                "hierarchical_cost")
GROUP_KEYS = ["protocol", "method", "test_set", "fraction"]  # one row of summary_agg.csv


def summary_table(paths: list[str | Path]):
    """One tidy row per run: identity (with the ``test_set`` that produced its scores), ``status`` (ok | skipped)
    and ``reason``, n_train, oa, miou, kappa, hierarchical_cost, level, architecture (``unet`` / ``segnet`` for the
    fine-tuning protocols, empty for the probes), ``iou_<id>`` per class, ``oa_<city>`` / ``miou_<city>`` per
    scored city (MiniFrance's in Table 2.4 order, then any other city), seconds, path."""
    import pandas as pd

    from tmf.data.minifrance import SCORED_IDS, city_rank

    if not paths:
        raise ValueError("collect: no metrics.json given")
    rows, cities = [], set()
    for p in paths:
        p = Path(p)
        if not p.is_file():
            raise FileNotFoundError(f"metrics file not found: {p}")
        m = read_json(p)
        missing = [k for k in SUMMARY_KEYS if k not in m]
        if missing:
            raise ValueError(f"{p}: not an evaluation metrics.json of this version (missing {missing}; re-run "
                             "its job)")
        row = {k: m[k] for k in SUMMARY_KEYS}
        row["status"] = m.get("status", "ok")
        row["reason"] = m.get("reason", "")
        row["level"] = m.get("level", "")
        row["architecture"] = m.get("architecture") or ""  # unet | segnet for the fine-tuning protocols
        for cid in SCORED_IDS:
            row[f"iou_{cid}"] = m.get("per_class_iou", {}).get(str(cid))
        for city, s in m.get("per_city", {}).items():
            row[f"oa_{city}"], row[f"miou_{city}"] = s["oa"], s["miou"]
            cities.add(city)
        row["seconds"] = m.get("seconds")
        row["path"] = str(p)
        rows.append(row)
    frame = pd.DataFrame(rows)
    fixed = [c for c in frame.columns if not c.startswith(("oa_", "miou_"))]
    per_city = [f"{k}_{c}" for c in sorted(cities, key=city_rank) for k in ("oa", "miou")]
    frame = frame[fixed[:fixed.index("seconds")] + per_city + fixed[fixed.index("seconds"):]]
    order = {m: i for i, m in enumerate(ENCODER_BASELINES + TRAINED_BASELINES)}
    frame["_m"] = frame["method"].map(lambda m: order.get(m, -1))
    frame = frame.sort_values(["protocol", "_m", "method", "test_set", "fraction", "seed"],
                              kind="stable").drop(columns="_m")
    return frame.reset_index(drop=True)


def aggregate_table(summary):
    """Mean and sample standard deviation (ddof = 1; empty for a single seed) over the seeds that ran of every
    score, per protocol × method × test set × fraction, with the number of seeds; ``status`` is ``skipped`` (with
    the ``reason``) when no seed ran."""
    import pandas as pd

    cols = ["oa", "miou", "kappa", "hierarchical_cost"] + [c for c in summary.columns
                                                          if c.startswith(("iou_", "oa_", "miou_"))]
    ran = summary["status"] == "ok"
    g = summary[ran].groupby(GROUP_KEYS, sort=False)
    agg = g[cols].agg(["mean", "std"])
    agg.columns = [f"{c}_{s}" for c, s in agg.columns]
    agg.insert(0, "n_seeds", g.size())
    agg.insert(1, "n_train", g["n_train"].first())
    agg.insert(2, "architecture", g["architecture"].first())
    agg = agg.reset_index()
    agg.insert(len(GROUP_KEYS), "status", "ok")
    agg.insert(len(GROUP_KEYS) + 1, "reason", "")
    skipped = summary[~ran].groupby(GROUP_KEYS, sort=False)["reason"].first().reset_index()
    skipped = skipped.merge(agg[GROUP_KEYS], how="left", on=GROUP_KEYS, indicator=True)
    skipped = skipped[skipped["_merge"] == "left_only"].drop(columns="_merge")
    if len(skipped):
        skipped = skipped.assign(status="skipped", n_seeds=0, n_train=0)
        agg = pd.concat([agg, skipped], ignore_index=True)[agg.columns]
    return agg


GRID_COLUMNS = ("protocol", "test_set", "fraction", "pretraining", "method", "downstream", "subset", "n_seeds",
                "n_train", "miou_mean", "miou_std", "oa_mean", "oa_std", "kappa_mean", "kappa_std")
_GRID_SCORES = GRID_COLUMNS[GRID_COLUMNS.index("n_seeds"):]


def modality_grid(agg):
    """The multi-modal protocols' runs in the shape of seed 000 Table 4.3: one row per (protocol, test set, label
    fraction, pretraining, downstream modalities), mean and std over seeds (columns :data:`GRID_COLUMNS`). ``pretraining``:
    ``random init`` (Table 4.3's "None"), ``RGB``, ``DEM``, ``RGB + DEM``, ``RGB + DEM ⋆`` (no in-modality views) or
    ``RGB (<method>)``; ``downstream``: the subset's modalities."""
    import pandas as pd

    from tmf.modalities import SUBSETS, pretraining_label, subset_label

    rows = []
    for _, r in agg.iterrows():
        base, subset = split_modal(r["protocol"])
        if subset is None or r["status"] != "ok":
            continue
        rows.append({"protocol": base, "test_set": r["test_set"], "fraction": r["fraction"],
                     "pretraining": pretraining_label(r["method"]), "method": r["method"],
                     "downstream": subset_label(subset), "subset": subset, **{k: r[k] for k in _GRID_SCORES}})
    frame = pd.DataFrame(rows, columns=list(GRID_COLUMNS))
    order = {s: i for i, s in enumerate(SUBSETS)}
    frame = frame.assign(_r=frame["method"].map(_row_rank), _s=frame["subset"].map(order))
    return frame.sort_values(["protocol", "test_set", "fraction", "_r", "method", "_s"], kind="stable").drop(
        columns=["_r", "_s"]).reset_index(drop=True)


def _row_rank(method: str) -> int:
    """Table 4.3's row order: None, single modalities, both, both ⋆; other methods last."""
    from tmf.modalities import METHOD_MODALITIES

    order = ["random", "mm_ssl_rgb", "mm_ssl_dem", "mm_ssl", "mm_ssl_star"]
    return order.index(method) if method in order else len(order) + (method in METHOD_MODALITIES)


def collect(paths: list[str | Path], out: str | Path, grid: str | Path | None = None) -> tuple[Path, Path]:
    """Write ``out`` (summary.csv: one row per run) and ``summary_agg.csv`` beside it (mean ± std over seeds), and
    with ``grid`` the multi-modal runs in Table 4.3's shape (:func:`modality_grid`)."""
    out = Path(out)
    summary = summary_table(paths)
    agg_path = out.with_name(out.stem + "_agg.csv")
    write_csv(out, summary)
    agg = aggregate_table(summary)
    write_csv(agg_path, agg)
    if grid:
        write_csv(Path(grid), modality_grid(agg))
    sets = summary.groupby("test_set").size().to_dict()
    skipped = int((summary["status"] == "skipped").sum())
    log.info("%d runs, by test set %s%s", len(summary), sets, f"; {skipped} skipped" if skipped else "")
    return out, agg_path


# ---------------------------------------------------------------- the study's questions
MIN_SEEDS = 3  # a "beats by more than the two stds added" claim needs at least this many seeds on each side


def margin(mean_a: float, std_a: float | None, mean_b: float, std_b: float | None) -> float | None:
    """How far ``a`` is above ``b`` beyond their spread: mean_a − mean_b − (std_a + std_b), the stds over seeds;
    None when a std is missing (a single seed: no spread to compare with). The one rule by which this project
    calls a difference a difference (the study's answers below, the report's findings, tmf.report.findings)."""
    stds = [std_a, std_b]
    if any(s is None or (isinstance(s, float) and math.isnan(s)) for s in stds):
        return None
    return float(mean_a) - float(mean_b) - (float(std_a) + float(std_b))


def beats(mean_a: float, std_a: float | None, mean_b: float, std_b: float | None) -> bool | None:
    """``a`` above ``b`` by more than the two stds added (:func:`margin` > 0); None without a spread."""
    m = margin(mean_a, std_a, mean_b, std_b)
    return None if m is None else m > 0


@dataclass(frozen=True)
class Answer:
    """One question of the study asked of a run's tables: ``holds`` is None when the tables cannot answer it
    (a row missing, too few seeds); ``detail`` gives the numbers (mean ± std, n) behind the answer."""

    key: str
    question: str
    holds: bool | None
    detail: str


def _row(agg, protocol: str, method: str, fraction: float | None = None):
    rows = agg[(agg["protocol"] == protocol) & (agg["method"] == method)]
    if fraction is not None:
        rows = rows[(rows["fraction"] - fraction).abs() < 1e-9]
    return rows.sort_values("fraction")


def _ms(r, key: str = "miou") -> tuple[float, float, int]:
    """(mean, std, n) of a score of one aggregate row; std 0 for one seed."""
    n = int(r["n_seeds"])
    std = float(r[f"{key}_std"]) if n > 1 and not math.isnan(float(r[f"{key}_std"])) else 0.0
    return float(r[f"{key}_mean"]), std, n


def _fmt(name: str, m: tuple[float, float, int]) -> str:
    return f"{name} {m[0]:.3f} ± {m[1]:.3f} (n = {m[2]})"


def study_answers(agg, split_coverage=None, baseline: str = "random") -> list[Answer]:
    """What the run's tables say on the study's questions (issue 14; docs/evaluation.md "What the default run
    finds"), from ``summary_agg.csv`` (``agg``) and an appearance encoder's ``split_coverage_summary.csv``
    (``split_coverage``; its coverage question is left out when None). Scores are mIoU, means ± sample stds over
    seeds; "by more than the two stds added" is mean_a − mean_b > std_a + std_b, asked only with at least
    ``MIN_SEEDS`` seeds on each side.

    - ``label_trend``: every encoder (SSL methods and ``baseline``) fine-tuned with its largest label fraction
      beats itself with its smallest (the mean rises);
    - ``ssl_vs_random_low``: the best SSL encoder beats ``baseline`` at the smallest fine-tuning fraction by more
      than the two stds added;
    - ``ssl_vs_random_linear``: the linear probe of the best SSL encoder beats ``baseline``'s (mean);
    - ``supervised``: the supervised baseline (seed 004 Table 3.1) is in the tables;
    - ``coverage_gap``: the unlabeled cities cover the test cities better than the labeled ones (intersection
      over test, seed 004 Table 2.7), by more than the two stds added over t-SNE seeds.
    """
    if "status" in agg:
        agg = agg[agg["status"] == "ok"]
    if "test_set" in agg and len(agg):
        agg = agg[agg["test_set"] == agg["test_set"].iloc[0]]  # one test set's scores (the default has one)
    out = []
    ssl = [m for m in dict.fromkeys(agg["method"]) if is_ssl(m)]
    ft = agg[agg["protocol"] == "finetune"]

    # label fraction trend
    parts, ok = [], []
    for method in [*ssl, baseline]:
        rows = _row(ft, "finetune", method)
        if len(rows) < 2:
            continue
        lo, hi = _ms(rows.iloc[0]), _ms(rows.iloc[-1])
        ok.append(hi[0] > lo[0])
        parts.append(f"{method}: {lo[0]:.3f} at {rows.iloc[0]['fraction']:g} → {hi[0]:.3f} at "
                     f"{rows.iloc[-1]['fraction']:g}")
    out.append(Answer("label_trend", "Does every encoder's fine-tuning mIoU rise with the label fraction?",
                       all(ok) if ok else None, "; ".join(parts) or "no encoder was fine-tuned at two fractions"))

    # SSL vs random at the smallest fraction
    base = _row(ft, "finetune", baseline)
    holds, detail = None, f"no fine-tuning row of {baseline} or of an SSL method"
    if len(base) and ssl:
        frac = float(base.iloc[0]["fraction"])
        cands = [(m, _ms(r.iloc[0])) for m in ssl if len(r := _row(ft, "finetune", m, frac))]
        if cands:
            best, b = max(cands, key=lambda c: c[1][0])
            r = _ms(base.iloc[0])
            m = margin(b[0], b[1], r[0], r[1])
            detail = (f"at {frac:g} of the labels: {_fmt(best, b)} vs {_fmt(baseline, r)}; mean difference minus "
                      f"the two stds {m:+.3f}")
            holds = m > 0 if min(b[2], r[2]) >= MIN_SEEDS else None
            if holds is None:
                detail += f" (fewer than {MIN_SEEDS} seeds)"
    out.append(Answer("ssl_vs_random_low", "Does the best SSL encoder beat random initialisation with few labels, "
                       "by more than the two stds added?", holds, detail))

    # linear probe
    lin = agg[agg["protocol"] == "linear"]
    base = _row(lin, "linear", baseline)
    cands = [(m, _ms(r.iloc[-1])) for m in ssl if len(r := _row(lin, "linear", m))]
    if len(base) and cands:
        best, b = max(cands, key=lambda c: c[1][0])
        r = _ms(base.iloc[-1])
        out.append(Answer("ssl_vs_random_linear", "Does the linear probe of a pretrained encoder beat random "
                           "initialisation's?", b[0] > r[0], f"{_fmt(best, b)} vs {_fmt(baseline, r)}"))
    else:
        out.append(Answer("ssl_vs_random_linear", "Does the linear probe of a pretrained encoder beat random "
                           "initialisation's?", None, f"no linear-probe row of {baseline} or of an SSL method"))

    # supervised baseline
    sup = _row(ft, "finetune", "supervised")
    out.append(Answer("supervised", "Is the supervised baseline (seed 004 Table 3.1) in the run?", bool(len(sup)),
                       _fmt("supervised", _ms(sup.iloc[-1])) if len(sup) else "no finetune row of supervised"))

    if split_coverage is not None:
        out.append(coverage_answer(split_coverage))
    return out


def coverage_answer(split_coverage) -> Answer:
    """``coverage_gap`` of :func:`study_answers`, from an appearance ``split_coverage_summary.csv`` table."""
    def pair(a: str):
        r = split_coverage[(split_coverage["train_split"] == a) & (split_coverage["test_split"] == "test")]
        return _ms(r.iloc[0], "iot") if len(r) and not math.isnan(float(r.iloc[0]["iot_mean"])) else None

    lab, unl = pair("labeled"), pair("unlabeled")
    question = ("Do the unlabeled cities cover the test cities' appearance better than the labeled ones, by more "
                "than the two stds added?")
    if lab is None or unl is None:
        return Answer("coverage_gap", question, None, "no labeled–test or unlabeled–test coverage")
    m = margin(unl[0], unl[1], lab[0], lab[1])
    detail = (f"intersection over test: {_fmt('unlabeled', unl)} vs {_fmt('labeled', lab)} (t-SNE seeds); mean "
              f"difference minus the two stds {m:+.3f}")
    holds = m > 0 if min(lab[2], unl[2]) >= MIN_SEEDS else None
    return Answer("coverage_gap", question, holds, detail + ("" if holds is not None
                                                             else f" (fewer than {MIN_SEEDS} seeds)"))
