"""Several cell types (issue 23): MSE against the hybrid loss, the shared head against one output
per cell type, and a held-out cell type, on synthetic data.

::

    python benchmarks/celltypes.py --out bench_out/celltypes
    python benchmarks/celltypes.py --out bench_out/held_out --held-out cellC

1. ``seq2exp synth`` with ``--cell-types`` cell types (genes switched off per cell type with
   ``--silent-fraction``, cell-type-specific enhancers), windows of ``--window`` bp read from
   the tiny preset's design;
2. one model per (variant, head, loss, seed) on every cell type at once (``data.cell_types``):
   the Seq2Exp and hierarchical-CNN ``--variants`` (and ``ridge``, ``promoter-ridge``: closed
   form, MSE, shared head; the second is the fit the ``learned`` preset's promoter path starts
   from), the shared head
   and the per-cell-type head (``model.celltype_head``, ``--heads``), the MSE
   (``train.loss: mse``) and the hybrid loss at each ``--weights`` value;
3. evaluation on the test genes: pooled and per-cell-type cross-gene Spearman, and the
   cross-cell-type Spearman with the number of genes where it is defined, beside two
   references: what the noiseless synthetic expression reaches against the measured one (the
   ceiling any model has there) and a signal oracle (``oracle_expression``: the design's
   elements in the window, read from the bigWigs the models read - what the inputs allow;
   in the tiny design (8 kb windows), a 4 kb window leaves out half of the enhancers);
4. the differential elements (masked variants): per test gene, pair of cell types and position,
   ``|mask A - mask B|`` scored against the elements causal (``R_ag``) in exactly one of the two
   (promoter and central ``promoter_keep`` bp left out), pooled over the pairs, beside the same
   AUPRC of ``|DNase A - DNase B|`` (``seq2exp_plugin.discover.recovery.differential_recovery``).
   The tiny design puts no such element within 1 kb of a TSS: use ``--window 4000`` or more
   (the default 2 kb window has no positives, and the AUPRC is NaN).

``--held-out NAME`` replaces 2-4: per (variant, seed), one model on every cell type but NAME
(MSE, and the hybrid loss at each weight where two or more remain) evaluated on NAME's test
genes from NAME's own signals (``--data cell_type=NAME``), beside a model trained on NAME
alone; Pearson and Spearman of each. Only the shared head runs there: a per-cell-type head has
no output for a cell type it never saw (it is refused).

Writes ``results.md`` and ``results.json`` into ``--out`` (mean +/- sd over ``--seeds``).
The defaults (120 genes, 3 cell types, a Mamba stack of d_model 16 x 1 layer, 150 steps of 6
examples, one seed) take a few minutes of CPU per run. The cross-cell-type Spearman of a gene
with 3 cell types takes four values: rank settings on 150 test genes or more (``--genes 1000``;
the measured commands are in benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from seq2exp_plugin.typed_config import parse_assignments, set_entries

STACK = {"d_model": 16, "n_layers": 1, "d_state": 4}
HEADS = ("shared", "per-cell-type")
PROMOTER_KEEP = 200


def differential_auprc(synth: Path, masks: dict, windows: dict, cells) -> dict:
    """The differential-element AUPRC of the masks (``(gene, cell) -> score``) and of the DNase
    difference, pooled over every pair of ``cells`` and the genes of ``windows``."""
    from itertools import combinations

    from seq2exp_plugin.discover.recovery import differential_labels, differential_recovery, track_scores

    records = [w for gene, w in windows.items() if all((gene, c) in masks for c in cells)]
    dnase = {c: track_scores(synth / c / "dnase.bw", records) for c in cells}
    labels, scores = {}, {"mask": ({}, {}), "dnase": ({}, {})}
    for a, b in combinations(cells, 2):
        pair = differential_labels(synth / "truth" / f"{a}.bed", synth / "truth" / f"{b}.bed", records,
                                   exclude_center=PROMOTER_KEEP, blacklist=synth / "blacklist.bed")
        for gene, lab in pair.items():
            key = f"{gene}|{a}|{b}"
            labels[key] = lab
            for k, cell in enumerate((a, b)):
                scores["mask"][k][key] = masks[gene, cell]
                scores["dnase"][k][key] = dnase[cell][gene]
    result = {name: differential_recovery(*pair, labels) for name, pair in scores.items()}
    return {"differential_auprc": result["mask"]["auprc"], "differential_auprc_dnase": result["dnase"]["auprc"],
            "differential_prevalence": result["mask"]["prevalence"]}


def reference_metrics(prediction, target, examples) -> dict:
    """What the benchmark reports of a model, for a closed-form reference: the Spearman over
    every (gene, cell type) of ``examples`` and ``celltype_metrics``."""
    from scipy import stats

    from seq2exp_plugin.train.metrics import celltype_metrics

    return {"spearman": float(stats.spearmanr(prediction, target)[0]),
            **celltype_metrics(np.asarray(prediction), np.asarray(target), examples["gene_id"], examples["cell_type"])}


def noise_ceiling(synth: Path, cells) -> dict:
    """The several-cell-type metrics of the noiseless expression against the measured target on
    the test genes: what a perfect model of ``E_gc`` reaches, given the synthetic noise
    (``truth/expression_terms.tsv``: ``expression = scale x E x 10^(h + noise)``)."""
    import anndata
    import pandas as pd

    obs = anndata.read_h5ad(synth / "genes.h5ad", backed="r").obs
    terms = pd.read_csv(synth / "truth" / "expression_terms.tsv", sep="\t")
    terms = terms[terms["gene_id"].isin(obs.index[obs["split"] == "test"]) & terms["cell_type"].isin(cells)]
    noiseless = terms["expression"] * 10.0 ** -terms["noise_log10"]
    return reference_metrics(np.log10(noiseless + 1), np.log10(terms["expression"] + 1), terms)


def synth_params(synth: Path):
    """The parameters ``synth`` was generated with (its manifest's ``params``)."""
    from seq2exp_plugin.data.synth import load_manifest
    from seq2exp_plugin.data.synth_layout import SynthParams

    return SynthParams.from_dict(load_manifest(synth)["params"])


def estimated_activity(synth: Path, cell: str, elements, fit, p) -> np.ndarray:
    """Each element's activity in ``cell`` as its bigWig signals give it back: the mean DNase
    and H3K27ac over the element, put on the scale of the drawn peak heights by a line fitted on
    the ``fit`` elements, inverted through ``synth_layout._peak_height`` (``peak_min + peak_scale
    x activity ** peak_exponent`` of the set's parameters ``p``), geometric mean of the two
    tracks; 0 where nothing is open."""
    import pyBigWig

    activity = np.ones(len(elements))
    for track in ("dnase", "h3k27ac"):
        with pyBigWig.open(str(synth / cell / f"{track}.bw")) as bw:
            mean = np.array([bw.stats(e.chrom, int(e.start), int(e.end), type="mean")[0] or 0.0
                             for e in elements.itertuples()])
        height = elements[f"{track}_{cell}"].to_numpy()
        slope, intercept = np.polyfit(height[fit & (height > 0)], mean[fit & (height > 0)], 1)
        peak = np.clip((mean - intercept) / slope - p.peak_min, 0.0, None)
        activity *= (peak / p.peak_scale) ** (1 / p.peak_exponent)
    return np.sqrt(activity)


def truth_elements(synth: Path):
    """``truth/elements.bed`` with its header's ``#`` dropped."""
    import pandas as pd

    elements = pd.read_csv(synth / "truth" / "elements.bed", sep="\t")
    return elements.rename(columns=lambda c: c.lstrip("#"))


def oracle_expression(synth: Path, cells, window: int):
    """Per (gene, cell type): its split, the measured expression and an oracle's log10(expression + 1). The
    oracle knows the synthetic design - each gene's promoter, its own enhancers, their contacts,
    its half-life term - and reads only the signals the models read (``estimated_activity``,
    fitted on the training genes), summed as ``synth_layout.expression_terms`` does. Only
    enhancers centred in the model's ``window`` count: what the inputs allow."""
    import anndata
    import pandas as pd

    p = synth_params(synth)
    obs = anndata.read_h5ad(synth / "genes.h5ad", backed="r").obs
    elements = truth_elements(synth)
    elements = elements[elements["kind"].isin(["promoter", "enhancer"])].reset_index(drop=True)
    promoter = elements["kind"].eq("promoter").to_numpy()
    centre = (elements["start"] + elements["end"]) / 2 - obs["tss"].reindex(elements["gene_id"]).to_numpy()
    counted = promoter | (np.abs(centre.to_numpy()) < window / 2)
    train = obs["split"].reindex(elements["gene_id"]).eq("train").to_numpy()
    terms = pd.read_csv(synth / "truth" / "expression_terms.tsv", sep="\t")
    halflife = terms.drop_duplicates("gene_id").set_index("gene_id")["halflife_log10"].reindex(obs.index)
    rows = []
    for cell in cells:
        activity = estimated_activity(synth, cell, elements, train, p)
        term = np.where(promoter, activity, p.activity_scale * activity * elements["contact"].to_numpy())
        total = (pd.Series(term[counted]).groupby(elements["gene_id"].to_numpy()[counted]).sum()
                 .reindex(obs.index, fill_value=0.0))
        rows.append(pd.DataFrame({"gene_id": obs.index, "split": obs["split"].to_numpy(), "cell_type": cell,
                                  "oracle": np.log10(p.expression_scale * total.to_numpy()
                                                     * 10.0 ** halflife.to_numpy() + 1)}))
    return pd.concat(rows).merge(terms[["gene_id", "cell_type", "expression"]], on=["gene_id", "cell_type"])


def signal_oracle(synth: Path, cells, window: int) -> dict:
    """The several-cell-type metrics of ``oracle_expression`` on the test genes: below the noise
    ceiling by what the signals and the window leave out."""
    oracle = oracle_expression(synth, cells, window)
    oracle = oracle[oracle["split"] == "test"]
    return reference_metrics(oracle["oracle"].to_numpy(), np.log10(oracle["expression"].to_numpy() + 1), oracle)


def run_config(synth: Path, out: Path, variant: str, loss: str, weight: float, seed: int, args,
               cells: list[str] | None = None, head: str = "shared") -> dict:
    """A training configuration on the cell types ``cells`` of ``synth`` (None: all of them)."""
    cells = args.cell_type_names if cells is None else cells
    tracks = {s: str(synth / "{cell_type}" / f"{s}.{'cool' if s == 'hic' else 'bw'}")
              for s in ("h3k27ac", "dnase", "hic")}
    name = f"{variant}-{head}-{loss}{weight:g}-seed{seed}" + (f"-on-{'+'.join(cells)}" if args.held_out else "")
    config = {
        "variant": variant,
        "model": {"generator": STACK, "predictor": STACK, "pool_width": 200, "mask": {"promoter_keep": PROMOTER_KEEP},
                  "celltype_head": head == "per-cell-type"},
        "data": {"genes": str(synth / "genes.h5ad"), "genome": str(synth / "genome.fa"), "signals": tracks,
                 **({"cell_types": cells} if len(cells) > 1 else {"cell_type": cells[0]}),
                 "window": args.window, "num_workers": 0, "blacklist": str(synth / "blacklist.bed")},
        "train": {"max_steps": args.steps, "batch_size": 2 * len(cells), "lr": args.lr,
                  "warmup_steps": args.steps // 10, "val_every_steps": max(1, args.steps // 3),
                  "loss": loss, "cross_celltype_weight": weight, "seed": seed, "progress_bar": False,
                  "log_every_steps": args.steps},
        "out_dir": str(out / name),
    }
    return set_entries(config, args.set, "--set")  # dotted run entries, e.g. model.promoter_linear=null


def train_and_evaluate(config: dict, cell_type: str | None = None, on_gene=None) -> dict:
    """Train (or resume) the run, then its metrics on the test genes: of every cell type it
    trained on, or of ``cell_type`` alone from that cell type's own signals (``on_gene`` sees
    each example's prediction)."""
    from seq2exp_plugin.train.config import RunConfig
    from seq2exp_plugin.train.evaluate import evaluate, load_run
    from seq2exp_plugin.train.fit import fit, make_dataset

    run = RunConfig.from_dict(config)
    fit(run)
    module, loaded = load_run(str(Path(run.out_dir) / "checkpoints" / "best.ckpt"),
                              None if cell_type is None else {"cell_type": cell_type})
    return evaluate(module.net, make_dataset(loaded, "test", require_target=True), progress=False,
                    on_gene=on_gene)


def summarise(rows: dict[str, list[dict]], columns: list[str], first: str) -> str:
    """A markdown table, mean +/- sd over seeds of each column."""
    lines = [f"| {first} | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, runs in rows.items():
        cells = [f"{np.mean([r[c] for r in runs]):.3f} +/- {np.std([r[c] for r in runs]):.3f}"
                 if all(c in r for r in runs) else "-" for c in columns]  # "-": no mask, no such value
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compare_settings(synth: Path, out: Path, args) -> tuple[str, dict]:
    """Every (variant, head, loss) on every cell type at once: the table, and each run's metrics."""
    rows: dict[str, list[dict]] = {}
    for variant in args.variants:
        closed_form = variant in ("ridge", "promoter-ridge")  # one fitted linear map: MSE, one shared output
        losses = [("mse", 0.0)] + ([] if closed_form else [("hybrid", w) for w in args.weights])
        for head in ["shared"] if closed_form else args.heads:
            for loss, weight in losses:
                for seed in args.seeds:
                    masks, windows = {}, {}

                    def keep(gene) -> None:
                        if gene.score is not None:
                            masks[gene.gene_id, gene.cell_type] = gene.score
                            windows[gene.gene_id] = gene.window

                    metrics = train_and_evaluate(run_config(synth, out, variant, loss, weight, seed, args,
                                                            head=head), on_gene=keep)
                    if masks:
                        metrics.update(differential_auprc(synth, masks, windows, args.cell_type_names))
                    name = f"{variant}, {head} head, {loss}" + (f" w={weight:g}" if loss == "hybrid" else "")
                    rows.setdefault(name, []).append(metrics)
                    print(f"{name} seed {seed}: spearman {metrics['spearman']:.4f}, cross-cell-type "
                          f"spearman {metrics['cross_celltype_spearman']:.4f} "
                          f"({metrics['cross_celltype_genes']} genes)"
                          + (f", differential AUPRC {metrics['differential_auprc']:.4f} (DNase difference "
                             f"{metrics['differential_auprc_dnase']:.4f}, random "
                             f"{metrics['differential_prevalence']:.4f})" if masks else ""), flush=True)
    columns = ["spearman", *(f"spearman_{c}" for c in args.cell_type_names), "cross_celltype_spearman"]
    columns += [c for c in ("differential_auprc", "differential_auprc_dnase", "differential_prevalence")
                if any(c in r for runs in rows.values() for r in runs)]
    rows[f"signal oracle (the design's elements in {args.window:,} bp)"] = [
        signal_oracle(synth, args.cell_type_names, args.window)]
    rows["noiseless expression (the ceiling)"] = [noise_ceiling(synth, args.cell_type_names)]
    table = summarise(rows, columns, "model")
    genes = {runs[0]["cross_celltype_genes"] for runs in rows.values()}
    return table + f"\n\ncross-cell-type Spearman over {', '.join(map(str, sorted(genes)))} test genes", rows


def held_out(synth: Path, out: Path, args) -> tuple[str, dict]:
    """Per (variant, seed): trained on every other cell type, and on the held-out one alone,
    both evaluated on the held-out one's test genes: the table, and each run's metrics."""
    name = args.held_out
    others = [c for c in args.cell_type_names if c != name]
    rows: dict[str, list[dict]] = {}
    for variant in args.variants:
        hybrid = len(others) > 1 and variant not in ("ridge", "promoter-ridge")
        losses = [("mse", 0.0)] + ([("hybrid", w) for w in args.weights] if hybrid else [])
        for seed in args.seeds:
            for cells, (loss, weight) in [(others, lw) for lw in losses] + [([name], ("mse", 0.0))]:
                metrics = train_and_evaluate(run_config(synth, out, variant, loss, weight, seed, args, cells),
                                             cell_type=name)
                setting = (f"{variant} trained on {'+'.join(cells)}, {loss}"
                           + (f" w={weight:g}" if loss == "hybrid" else ""))
                rows.setdefault(setting, []).append(metrics)
                print(f"{setting} seed {seed}: on {name} pearson {metrics['pearson']:.4f}, spearman "
                      f"{metrics['spearman']:.4f} ({metrics['n_genes']} genes)", flush=True)
    return (summarise(rows, ["pearson", "spearman"], f"model (evaluated on {name}, its own signals)")
            + f"\n\n{next(iter(rows.values()))[0]['n_genes']} test genes of {name}", rows)


def main(argv=None) -> int:
    from seq2exp_plugin.atomic import write_json, write_text
    from seq2exp_plugin.data.synth import SynthParams, generate

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--genes", type=int, default=120)
    p.add_argument("--cell-types", type=int, default=3)
    p.add_argument("--silent-fraction", type=float, default=0.2)
    p.add_argument("--window", type=int, default=2000)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--weights", type=float, nargs="+", default=[1.0], help="hybrid loss weights w")
    p.add_argument("--variants", nargs="+", default=["seq2exp", "hierarchical-cnn"],
                   choices=["seq2exp", "hierarchical-cnn", "seq-signals", "ridge", "promoter-ridge"],
                   help="ridge and promoter-ridge: closed form, MSE and the shared head only (promoter-ridge is "
                        "the fit the learned preset's promoter path starts from)")
    p.add_argument("--heads", nargs="+", default=list(HEADS), choices=HEADS,
                   help="the shared head and/or one output per cell type (model.celltype_head)")
    p.add_argument("--held-out", metavar="NAME",
                   help="train on every other cell type, evaluate on NAME (cellA, cellB, ...) beside "
                        "a model trained on NAME alone")
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="run entries for every trained run (YAML values), e.g. model.promoter_linear=null; "
                        "use another --out for each setting")
    args = p.parse_args(argv)
    args.set = parse_assignments(args.set)
    if not 2 <= args.cell_types <= 6:
        p.error("--cell-types must be between 2 and 6")
    args.cell_type_names = [f"cell{chr(ord('A') + i)}" for i in range(args.cell_types)]
    if args.held_out is not None and args.held_out not in args.cell_type_names:
        p.error(f"--held-out must be one of {args.cell_type_names}")
    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    synth = out / "synth"
    if not (synth / "manifest.yaml").is_file():
        generate(synth, SynthParams.from_preset("tiny", n_genes=args.genes, seed=args.data_seed,
                                                cell_types=tuple(args.cell_type_names),
                                                silent_fraction=args.silent_fraction))
    table, rows = held_out(synth, out, args) if args.held_out else compare_settings(synth, out, args)
    print(table)
    write_text(out / "results.md", table + "\n")
    write_json(out / "results.json", {"args": dict(vars(args)), "runs": rows})
    print(f"celltypes benchmark: wall time {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
