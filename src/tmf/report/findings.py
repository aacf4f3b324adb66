""""What this run found": the sentences that open ``reports/index.html``, written from the run's numbers.

Pure functions of the summary tables (``results/evaluate/summary_agg.csv`` and the appearance coverage), so
that no result is ever written by hand. A difference is called a difference only when it exceeds the spread of
the two numbers compared (their standard deviations over seeds, added); otherwise the sentence says it is within
the spread. Each finding names the report item (table or figure) it rests on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from tmf.evaluate.summary import beats
from tmf.plan.names import is_ssl, split_protocol

PROTOCOL_WORDS = {"finetune": "fine-tuning", "linear": "the linear probe"}
MAX_NAMED = 4  # methods named with their numbers in a trend sentence; beyond that, names only


@dataclass(frozen=True)
class Finding:
    text: str  # one or two sentences, plain text
    item: str  # the report item it rests on (tmf.report.items), linked from the sentence


def _ok(x) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def _pct(mean: float, std: float | None, n: int | None = None) -> str:
    text = f"{100 * mean:.1f}" + (f" ± {100 * std:.1f}" if _ok(std) else "") + " %"
    return text + (f" (n = {n})" if n is not None else "")


def compare(a: tuple[float, float | None], b: tuple[float, float | None], unit: str = "points",
            scale: float = 100.0, digits: int = 1) -> str:
    """How the difference of ``a`` and ``b`` (mean, std over seeds) stands against their spread: "+6.2 points,
    more than the spread (5.6)", "…, within the spread (5.6): no clear difference", or that no spread was measured
    (a single seed). Either way round, by the project's one rule (:func:`tmf.evaluate.summary.beats`)."""
    diff = float(a[0]) - float(b[0])
    d = f"{scale * diff:+.{digits}f}" + (f" {unit}" if unit else "")
    if beats(*a, *b) is None:
        return f"{d} (one seed: no spread to compare it with)"
    s = f"{scale * (float(a[1]) + float(b[1])):.{digits}f}"
    if beats(*a, *b) or beats(*b, *a):
        return f"{d}, more than the spread ({s}, the two standard deviations added)"
    return f"{d}, within the spread ({s}, the two standard deviations added): no clear difference"


MEAN, STD = "miou_mean", "miou_std"  # the findings speak of the test mIoU (mean and std over seeds)


def _ms(row: pd.Series) -> tuple[float, float | None]:
    return float(row[MEAN]), (float(row[STD]) if _ok(row.get(STD)) else None)


def _beats(a: pd.Series, b: pd.Series) -> bool:
    """``a`` above ``b`` by more than their spread."""
    return beats(*_ms(a), *_ms(b)) is True


def _miou(row: pd.Series, n: bool = True) -> str:
    return _pct(row[MEAN], row[STD], int(row["n_seeds"]) if n else None)


def _protocols(agg: pd.DataFrame) -> list[str]:
    """The pixel-level protocols the findings speak of: fine-tuning first, then the linear probe, the others."""
    from tmf.plan.names import SCENE_PROTOCOLS

    present = [p for p in dict.fromkeys(agg["protocol"]) if split_protocol(p)[0] not in SCENE_PROTOCOLS]
    first = [p for p in ("finetune", "linear") if p in present]
    return first + [p for p in present if p not in first]


def _words(protocol: str) -> str:
    return PROTOCOL_WORDS.get(protocol, protocol.replace("_", " "))


def _frac(f: float) -> str:
    return f"{100 * f:g} %"


def pretrained_vs_random(agg: pd.DataFrame) -> list[Finding]:
    """At each label fraction of each protocol: the best pretrained (self-supervised) encoder against random
    initialisation, and how many pretrained encoders beat it by more than the spread."""
    out = []
    for protocol in _protocols(agg):
        df = agg[(agg["protocol"] == protocol) & agg[MEAN].notna()]
        for f in sorted(df["fraction"].unique()):
            at = df[df["fraction"] == f]
            random, ssl = at[at["method"] == "random"], at[at["method"].map(is_ssl)]
            if not len(random) or not len(ssl):
                continue
            r, best = random.iloc[0], ssl.loc[ssl[MEAN].idxmax()]
            text = (f"With {_frac(f)} of the labels, {_words(protocol)} from the best pretrained encoder "
                    f"({best['method']}) reaches mIoU {_miou(best)} against {_miou(r)} from random initialisation: "
                    f"{compare(_ms(best), _ms(r))}.")
            if len(ssl) > 1:
                beat = sum(_beats(s, r) for _, s in ssl.iterrows())
                text += (f" {beat} of {len(ssl)} pretrained encoders beat random initialisation by more than the "
                         "spread.")
            out.append(Finding(text, "segmentation_vs_published"))
    return out


def label_fraction_trend(agg: pd.DataFrame) -> list[Finding]:
    """Per protocol with several label fractions: does each method's score rise from the smallest to the
    largest fraction, fall, or stay within the spread?"""
    out = []
    for protocol in _protocols(agg):
        df = agg[(agg["protocol"] == protocol) & agg[MEAN].notna()]
        fractions = sorted(df["fraction"].unique())
        if len(fractions) < 2:
            continue
        lo, hi = fractions[0], fractions[-1]
        groups: dict[str, list[tuple[str, str]]] = {"rises": [], "falls": [], "within": [], "one seed": []}
        for method, g in df.groupby("method", sort=False):
            a, b = g[g["fraction"] == lo], g[g["fraction"] == hi]
            if not len(a) or not len(b):
                continue
            a, b = a.iloc[0], b.iloc[0]
            kind = ("one seed" if beats(*_ms(b), *_ms(a)) is None else "rises" if _beats(b, a) else "falls" if _beats(a, b)
                    else "within")
            groups[kind].append((method, f"{method} ({_miou(a, n=False)} → {_miou(b, n=False)})"))
        n = sum(len(v) for v in groups.values())
        if not n:
            continue
        parts = [f"{words} {len(groups[kind])} of {n}: "
                 + ", ".join(detail if n <= MAX_NAMED else name for name, detail in groups[kind])
                 for kind, words in (("rises", "rises for"), ("falls", "falls for"),
                                     ("within", "changes by less than the spread for"),
                                     ("one seed", "has one seed, so no spread to judge a change by, for"))
                 if groups[kind]]
        out.append(Finding(f"From {_frac(lo)} to {_frac(hi)} of the labels, the mIoU of {_words(protocol)} "
                           f"{'; '.join(parts)}.", "scores_vs_fraction"))
    return out


def strongest_and_weakest(agg: pd.DataFrame) -> list[Finding]:
    """Per protocol, at its largest label fraction: the method with the highest and the lowest mean score."""
    out = []
    for protocol in _protocols(agg):
        df = agg[(agg["protocol"] == protocol) & agg[MEAN].notna()]
        df = df[df["fraction"] == df["fraction"].max()]
        if len(df) < 2:
            continue
        top, low = df.loc[df[MEAN].idxmax()], df.loc[df[MEAN].idxmin()]
        out.append(Finding(
            f"With {_frac(df['fraction'].max())} of the labels, the strongest method under {_words(protocol)} is "
            f"{top['method']} (mIoU {_miou(top)}) and the weakest {low['method']} ({_miou(low)}), of {len(df)} "
            f"methods: {compare(_ms(top), _ms(low))}.", "segmentation_vs_published"))
    return out


def coverage_gap(coverage: pd.DataFrame, published: dict | None = None) -> list[Finding]:
    """Per appearance encoder: how much better the unlabeled cities cover the test cities' appearance than the
    labeled ones (intersection over test, mean ± std over t-SNE seeds). ``coverage``: one row per encoder and
    pair (``labeled_vs_test``, ``unlabeled_vs_test``) with ``iot_mean``, ``iot_std`` and ``n_seeds``;
    ``published``: Table 2.7 of Castillo-Navarro 2022 (``{pair: {"iot": value}}``)."""
    out = []
    for encoder, g in coverage.groupby("encoder", sort=False):
        rows = {r["pair"]: r for _, r in g.iterrows()}
        if not {"labeled_vs_test", "unlabeled_vs_test"} <= set(rows):
            continue
        lab, unl = rows["labeled_vs_test"], rows["unlabeled_vs_test"]
        if not _ok(lab["iot_mean"]) or not _ok(unl["iot_mean"]):
            continue
        iot = [(float(r["iot_mean"]), float(r["iot_std"]) if _ok(r["iot_std"]) else None) for r in (unl, lab)]
        n = int(unl["n_seeds"])
        text = (f"Appearance coverage ({encoder} features, {n} t-SNE seed{'s' if n != 1 else ''}): the unlabeled "
                f"cities cover the test cities with IoT {_num(unl)} against {_num(lab)} for the labeled cities: "
                f"a gap of {compare(*iot, unit='', scale=1.0, digits=2)}.")
        if published:
            text += (f" Castillo-Navarro 2022 (Table 2.7) reports {published['unlabeled_vs_test']['iot']:.2f} "
                     f"against {published['labeled_vs_test']['iot']:.2f}.")
        out.append(Finding(text, "coverage_vs_published"))
    return out


def _num(row) -> str:
    return f"{row['iot_mean']:.2f}" + (f" ± {row['iot_std']:.2f}" if _ok(row["iot_std"]) else "")


def findings(agg: pd.DataFrame | None, coverage: pd.DataFrame | None, published: dict | None = None) -> list[Finding]:
    """Every finding of a run, in reading order: pretrained vs random, the label-fraction trend, the strongest
    and weakest method, the appearance coverage gap."""
    out: list[Finding] = []
    if agg is not None and len(agg):
        out += pretrained_vs_random(agg) + label_fraction_trend(agg) + strongest_and_weakest(agg)
    if coverage is not None and len(coverage):
        out += coverage_gap(coverage, published)
    return out


def coverage_frame(summaries: dict[str, dict]) -> pd.DataFrame:
    """The split coverage of appearance ``summary.json`` contents (``{encoder: summary}``) as the table
    :func:`coverage_gap` reads; skipped encoders are left out."""
    rows = []
    for encoder, s in summaries.items():
        if s.get("status", "ok") != "ok":
            continue
        for pair, scores in s.get("split_coverage", {}).items():
            rows.append({"encoder": encoder, "pair": pair, "iot_mean": scores["iot"]["mean"],
                         "iot_std": scores["iot"]["std"], "n_seeds": len(s.get("seeds", []))})
    return pd.DataFrame(rows, columns=["encoder", "pair", "iot_mean", "iot_std", "n_seeds"])
