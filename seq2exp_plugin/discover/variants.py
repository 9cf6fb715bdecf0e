"""Variant effects on predicted expression and on the mask, in TSS-centred windows.

gReLU's ``predict_variant_effects`` centres each window on the variant - wrong for Seq2Exp,
whose windows are centred on the gene's TSS (and whose ``check_reference=True`` raises in 1.1.0).
Here every (variant, gene) pair whose TSS-centred window contains the variant gets a reference
window (the dataset's, with the gene's signals, features and blacklist) and an alternate window
(the same with the alternate allele), and the model is run on both:

- ``delta = prediction(alt) - prediction(ref)`` (log10(expression + 1) units);
- the change of the mask score (the generator's posterior mean, what ``seq2exp predict``
  writes): mean |alt - ref| over the window, and alt - ref at the variant (mean over its bases).
  The generator reads the alternate DNA: the mask is recomputed, as in ISM's default.

Input: a VCF (``.vcf``/``.vcf.gz``; CHROM, POS, ID, REF, ALT; multi-allelic ALTs split) or a
tab-separated table with columns ``chrom``, ``pos`` (1-based), ``ref``, ``alt`` (optional
``id``). Reference alleles are checked against the genome before any model work; a mismatch is a
``ValueError`` naming the variant. Substitutions (SNVs and same-length MNVs) are scored; indels,
symbolic and missing ALTs are reported as not scored with the reason (windows are anchored on the
TSS and signals are measured on the reference, so an indel would need the window content shifted
and the signals re-aligned - not implemented). Variants outside every selected gene's window are
reported too, never silently dropped.

Minus-strand genes follow the dataset's ``rc_minus_strand``: when windows are reverse-complemented
the alternate allele is written on the genomic + strand and reverse-complemented with the window,
so ``window_index`` is the index the model reads (``end - 1 - position``).
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..atomic import atomic_output_dir, check_output_dir
from ..errors import InputError, MissingInputError

__all__ = ["Variant", "read_variants", "check_reference", "pair_variants", "variant_effects",
           "run_variants", "RESULT_COLUMNS"]

_ACGT = set("ACGT")

RESULT_COLUMNS = ("variant_id", "chrom", "pos", "ref", "alt", "kind", "gene_id", "strand", "tss",
                  "distance_to_tss", "window_index", "ref_prediction", "alt_prediction", "delta",
                  "mask_ref_at_variant", "mask_alt_at_variant", "delta_mask_at_variant",
                  "mean_abs_delta_mask")
NOT_SCORED_COLUMNS = ("variant_id", "chrom", "pos", "ref", "alt", "reason")


@dataclass(frozen=True)
class Variant:
    """``pos`` 1-based (VCF); ``ref``/``alt`` upper-case on the + strand."""

    chrom: str
    pos: int
    ref: str
    alt: str
    id: str = ""

    @property
    def label(self) -> str:
        return self.id or f"{self.chrom}:{self.pos}:{self.ref}>{self.alt}"

    @property
    def start(self) -> int:
        """0-based start of the reference allele."""
        return self.pos - 1

    @property
    def end(self) -> int:
        return self.pos - 1 + len(self.ref)

    @property
    def kind(self) -> str:
        if not set(self.alt) <= _ACGT:
            return "unsupported"
        if len(self.ref) != len(self.alt):
            return "indel"
        return "SNV" if len(self.ref) == 1 else "MNV"

    def skip_reason(self) -> str | None:
        """Why this variant is not scored (``None``: scored)."""
        kind = self.kind
        if kind == "unsupported":
            return f"ALT {self.alt!r} is not a sequence of A/C/G/T (symbolic, missing or N)"
        if kind == "indel":
            return ("indel: only substitutions (SNV/MNV) are scored - TSS-anchored windows would need "
                    "shifted content and re-aligned signals")
        if self.ref == self.alt:
            return "ALT equals REF"
        return None


def _is_vcf(path: Path) -> bool:
    from ..data.bed import open_text

    if path.name.endswith((".vcf", ".vcf.gz", ".vcf.bgz")):
        return True
    with open_text(path) as fh:
        return fh.readline().startswith("##fileformat=VCF")


def read_variants(path) -> list[Variant]:
    """Variants of a VCF or a TSV table (see the module docstring), in file order; a variant
    listed twice (same chromosome, position and alleles, whatever its id) is kept once, with a
    warning."""
    from ..data.genome import normalize_chrom

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"variants file not found: {path}")
    try:
        variants = _read_vcf(path) if _is_vcf(path) else _read_table(path)
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text VCF or TSV (plain or gzip)") from None
    first: dict[tuple, Variant] = {}
    repeated = []
    for v in variants:
        key = (normalize_chrom(v.chrom), v.pos, v.ref, v.alt)
        if key in first:
            repeated.append(v)
        else:
            first[key] = v
    if repeated:
        v = repeated[0]
        warnings.warn(f"{path}: {len(repeated)} duplicate record(s) of a variant already listed "
                      f"(e.g. {v.chrom}:{v.pos} {v.ref}>{v.alt}); each variant is scored once", stacklevel=2)
    return list(first.values())


def _allele(value: str, what: str, where: str) -> str:
    value = str(value).strip().upper()
    if not value:
        raise InputError(f"{where}: empty {what} allele")
    return value


def _read_vcf(path: Path) -> list[Variant]:
    from ..data.bed import open_text

    out = []
    with open_text(path) as fh:
        for lineno, line in enumerate(fh, start=1):
            if line.startswith("#") or not line.strip():
                continue
            fields = line.rstrip("\n\r").split("\t")
            where = f"{path}, line {lineno}"
            if len(fields) < 5:
                raise InputError(f"{where}: a VCF record needs CHROM POS ID REF ALT (tab-separated), "
                                 f"found {len(fields)} fields")
            chrom, pos, vid, ref, alts = fields[:5]
            try:
                pos = int(pos)
            except ValueError:
                raise InputError(f"{where}: POS is not an integer: {pos!r}") from None
            if pos < 1:
                raise InputError(f"{where}: POS must be >= 1 (1-based), got {pos}")
            ref = _allele(ref, "REF", where)
            vid = "" if vid == "." else vid
            alt_list = alts.split(",")
            for alt in alt_list:
                label = vid if len(alt_list) == 1 or not vid else f"{vid}:{alt.upper()}"
                out.append(Variant(chrom, pos, ref, _allele(alt, "ALT", where), label))
    return out


def _read_table(path: Path) -> list[Variant]:
    import pandas as pd

    from ..data.bed import open_text

    try:
        with open_text(path) as fh:
            df = pd.read_csv(fh, sep="\t", dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: empty variant table (a header line chrom, pos, ref, alt expected)") from None
    cols = {c.lower().lstrip("#"): c for c in df.columns}
    missing = [c for c in ("chrom", "pos", "ref", "alt") if c not in cols]
    if missing:
        raise MissingInputError(f"{path}: variant table needs columns chrom, pos (1-based), ref, alt; missing "
                       f"{missing} (found {list(df.columns)})")
    id_col = cols.get("id", cols.get("variant_id", cols.get("name")))
    out = []
    for i, row in enumerate(df.itertuples(index=False, name=None), start=2):
        rec = dict(zip(df.columns, row))
        where = f"{path}, line {i}"
        try:
            pos = int(rec[cols["pos"]])
        except ValueError:
            raise InputError(f"{where}: pos is not an integer: {rec[cols['pos']]!r}") from None
        if pos < 1:
            raise InputError(f"{where}: pos must be >= 1 (1-based), got {pos}")
        out.append(Variant(str(rec[cols["chrom"]]), pos, _allele(rec[cols["ref"]], "ref", where),
                           _allele(rec[cols["alt"]], "alt", where), str(rec[id_col]) if id_col else ""))
    return out


def check_reference(variants: Iterable[Variant], genome) -> None:
    """Every variant's REF equals the genome (case-insensitive); else a ``ValueError`` naming the
    first mismatching variant (and how many mismatch). Chromosomes the genome lacks and alleles
    running off the chromosome are errors too."""
    from ..data.genome import Genome

    genome = genome if isinstance(genome, Genome) else Genome(genome)
    bad = []
    for v in variants:
        try:
            chrom = genome.resolve(v.chrom)
        except KeyError as err:
            raise MissingInputError(f"variant {v.label}: {err.args[0]}") from None
        if v.end > genome.chrom_sizes[chrom]:
            raise InputError(f"variant {v.label}: {v.chrom}:{v.pos} {v.ref} runs past the end of {chrom} "
                             f"({genome.chrom_sizes[chrom]} bp in {genome.path})")
        found = genome.sequence(chrom, v.start, v.end).upper()
        if found != v.ref:
            bad.append((v, found))
    if bad:
        v, found = bad[0]
        more = f" ({len(bad) - 1} more variants mismatch too)" if len(bad) > 1 else ""
        raise InputError(f"variant {v.label}: reference allele {v.ref} does not match the genome "
                         f"{genome.path}, which has {found} at {v.chrom}:{v.pos}{more}")


@dataclass
class _Gene:
    index: int
    gene_id: str
    chrom: str
    tss: int
    strand: str
    start: int
    end: int


def pair_variants(variants: Sequence[Variant], genes: Sequence[_Gene], genome, mode: str = "auto"
                  ) -> tuple[list[tuple[Variant, _Gene]], list[tuple[Variant, str]]]:
    """``(pairs, not_scored)``: each scorable variant with every gene whose window contains all
    its bases (``mode="auto"``) or with the nearest such TSS only (``"nearest"``); the others with
    a reason."""
    if mode not in ("auto", "nearest"):
        raise InputError(f"window-genes mode must be 'auto' or 'nearest', got {mode!r}")
    by_chrom: dict[str, list[_Gene]] = {}
    for g in genes:
        by_chrom.setdefault(genome.resolve(g.chrom), []).append(g)
    pairs, skipped = [], []
    for v in variants:
        reason = v.skip_reason()
        if reason:
            skipped.append((v, reason))
            continue
        chrom = genome.resolve(v.chrom)
        hits = [g for g in by_chrom.get(chrom, []) if g.start <= v.start and v.end <= g.end]
        if not hits:
            skipped.append((v, "outside every selected gene's window"))
            continue
        if mode == "nearest":
            hits = [min(hits, key=lambda g: (abs(v.start - g.tss), g.gene_id))]
        pairs.extend((v, g) for g in hits)
    return pairs, skipped


def _alt_window(seq, gene: _Gene, variant: Variant, reverse: bool):
    """The alternate window (window order) from the reference window ``seq (4, L)``."""
    import torch

    fwd = seq.flip(0, 1) if reverse else seq.clone()  # reverse complement: genomic order, + strand
    offset = variant.start - gene.start
    alt = torch.zeros(4, len(variant.alt), dtype=fwd.dtype)
    for k, b in enumerate(variant.alt):
        alt["ACGT".index(b), k] = 1.0
    fwd[:, offset:offset + len(variant.alt)] = alt
    return fwd.flip(0, 1) if reverse else fwd


def variant_effects(net, dataset, variants: Sequence[Variant], gene_ids: Sequence[str] | None = None,
                    window_genes: str = "auto", batch_size: int = 16, device: str = "cpu",
                    progress: bool = True):
    """``(results DataFrame (RESULT_COLUMNS), not-scored DataFrame)`` for a window dataset and a
    trained network (eval mode). The reference alleles must have been checked
    (:func:`check_reference`)."""
    import pandas as pd
    import torch
    from tqdm import tqdm

    from ..model.batch import cpu_rows_per_call, predict_batch

    if batch_size < 1:
        raise InputError(f"batch size must be >= 1, got {batch_size}")
    extractor = dataset.extractor
    genome = extractor.genome
    half = dataset.window // 2
    ids = [str(g) for g in dataset.gene_ids]
    wanted = set(ids) if gene_ids is None else {str(g) for g in gene_ids}
    genes = [_Gene(i, g, str(dataset.chroms[i]), int(dataset.tss[i]), str(dataset.strands[i]),
                   int(dataset.tss[i]) - half, int(dataset.tss[i]) - half + dataset.window)
             for i, g in enumerate(ids) if g in wanted]
    pairs, skipped = pair_variants(variants, genes, genome, window_genes)
    rc = bool(extractor.rc_minus_strand)

    net = net.to(device).eval()
    rows = []
    by_gene: dict[int, list[Variant]] = {}
    for v, g in pairs:
        by_gene.setdefault(g.index, []).append(v)
    gene_of = {g.index: g for g in genes}
    bar = tqdm(total=len(pairs), desc="variant-gene pairs", unit="pair", disable=not progress)
    with torch.no_grad():
        per_call = cpu_rows_per_call(dataset.window, device)  # on the CPU, smaller calls
        step = batch_size if per_call is None else min(batch_size, per_call)
        for gi, vs in by_gene.items():
            gene = gene_of[gi]
            item = dataset[gi]
            reverse = rc and gene.strand == "-"
            seq = torch.as_tensor(np.asarray(item["seq"])).float()
            shared = {k: torch.as_tensor(np.asarray(item[k]))[None]
                      for k in ("signals", "features", "blacklist", "cell_type_index")}
            if item.get("mask") is not None:
                shared["mask"] = torch.as_tensor(np.asarray(item["mask"]))[None]

            def run(batch_seq):
                n = batch_seq.shape[0]
                batch = {k: t.expand(n, *t.shape[1:]).to(device) for k, t in shared.items()}
                batch["seq"] = batch_seq.to(device)
                pred, mask = predict_batch(net, batch)
                score = None if mask is None else mask.score.float().cpu()
                return pred.float().cpu(), score

            ref_pred, ref_score = run(seq[None])
            for lo in range(0, len(vs), step):
                chunk = vs[lo:lo + step]
                alt_pred, alt_score = run(torch.stack([_alt_window(seq, gene, v, reverse) for v in chunk]))
                for k, v in enumerate(chunk):
                    first = v.start - gene.start
                    idx = np.arange(first, first + len(v.ref))
                    if reverse:
                        idx = dataset.window - 1 - idx
                    row = {
                        "variant_id": v.label, "chrom": v.chrom, "pos": v.pos, "ref": v.ref, "alt": v.alt,
                        "kind": v.kind, "gene_id": gene.gene_id, "strand": gene.strand, "tss": gene.tss,
                        "distance_to_tss": (v.start - gene.tss) * (-1 if gene.strand == "-" else 1),
                        "window_index": int(idx.min()),
                        "ref_prediction": float(ref_pred[0]), "alt_prediction": float(alt_pred[k]),
                        "delta": float(alt_pred[k] - ref_pred[0]),
                    }
                    if ref_score is not None:
                        r, a = ref_score[0], alt_score[k]
                        row.update(mask_ref_at_variant=float(r[idx].mean()), mask_alt_at_variant=float(a[idx].mean()),
                                   delta_mask_at_variant=float((a[idx] - r[idx]).mean()),
                                   mean_abs_delta_mask=float((a - r).abs().mean()))
                    else:
                        row.update(mask_ref_at_variant=np.nan, mask_alt_at_variant=np.nan,
                                   delta_mask_at_variant=np.nan, mean_abs_delta_mask=np.nan)
                    rows.append(row)
                bar.update(len(chunk))
    bar.close()
    results = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
    results = results.sort_values(["chrom", "pos", "alt", "gene_id"], kind="stable").reset_index(drop=True)
    not_scored = pd.DataFrame([(v.label, v.chrom, v.pos, v.ref, v.alt, reason) for v, reason in skipped],
                              columns=list(NOT_SCORED_COLUMNS))
    return results, not_scored


def _to_anndata(results):
    """Variants x genes: X = delta (NaN where the pair was not scored); layers for the mask."""
    import anndata
    import pandas as pd

    variants = list(dict.fromkeys(results["variant_id"]))
    genes = list(dict.fromkeys(results["gene_id"]))
    vi = {v: i for i, v in enumerate(variants)}
    gi = {g: i for i, g in enumerate(genes)}
    shape = (len(variants), len(genes))
    layers = {k: np.full(shape, np.nan, dtype=np.float32)
              for k in ("delta", "delta_mask_at_variant", "mean_abs_delta_mask")}
    for row in results.itertuples(index=False):
        for k in layers:
            layers[k][vi[row.variant_id], gi[row.gene_id]] = getattr(row, k)
    obs = (results.drop_duplicates("variant_id").set_index("variant_id")
           [["chrom", "pos", "ref", "alt", "kind"]].loc[variants])
    obs.index = pd.Index([str(v) for v in variants], name=None)
    genes_df = (results.drop_duplicates("gene_id").set_index("gene_id")[["strand", "tss", "ref_prediction"]]
                .loc[genes])
    genes_df.index = pd.Index([str(g) for g in genes], name=None)
    adata = anndata.AnnData(X=layers.pop("delta"), obs=obs, var=genes_df)
    for k, v in layers.items():
        adata.layers[k] = v
    adata.uns["description"] = "X: alt - ref predicted expression per (variant, gene); NaN = not scored"
    return adata


def run_variants(checkpoint: str, variants_path, out_dir, gene_ids: Sequence[str] | None = None,
                 window_genes: str = "auto", batch_size: int = 16, device: str = "cpu", h5ad: bool = False,
                 data_overrides: dict | None = None, force: bool = False, progress: bool = True) -> dict:
    """``seq2exp variants``: read and check the variants (before any model work), score them, and
    write ``out_dir/variants.tsv``, ``not_scored.tsv``, ``summary.json`` (and ``variants.h5ad``)
    atomically. Returns the summary."""
    from ..train.evaluate import load_run
    from ..train.fit import make_dataset

    out_dir = check_output_dir(out_dir, force, "--out")
    t0 = time.perf_counter()
    variants = read_variants(variants_path)
    if not variants:
        raise InputError(f"{variants_path}: no variants")
    module, run = load_run(checkpoint, data_overrides)
    dataset = make_dataset(run, None, gene_ids=list(gene_ids) if gene_ids else None)
    check_reference(variants, dataset.extractor.genome)
    results, not_scored = variant_effects(module.net, dataset, variants, gene_ids, window_genes, batch_size,
                                          device, progress)
    summary = {
        "checkpoint": str(checkpoint), "variants_file": str(variants_path), "variants": len(variants),
        "variants_scored": int(results["variant_id"].nunique()), "pairs_scored": len(results),
        "genes_with_variants": int(results["gene_id"].nunique()),
        "not_scored": len(not_scored),
        "not_scored_by_reason": {str(k): int(n) for k, n in not_scored["reason"].value_counts().items()},
        "window": run.data.window, "rc_minus_strand": bool(run.data.rc_minus_strand), "window_genes": window_genes,
        "pos": "1-based (VCF)", "delta": "alt - ref prediction (log10(expression + 1) units)",
        "seconds": round(time.perf_counter() - t0, 3),
    }
    with atomic_output_dir(out_dir, force=force) as tmp:
        results.to_csv(tmp / "variants.tsv", sep="\t", index=False, float_format="%.6g")
        not_scored.to_csv(tmp / "not_scored.tsv", sep="\t", index=False)
        if h5ad:
            if len(results):
                _to_anndata(results).write_h5ad(tmp / "variants.h5ad")
            else:
                summary["h5ad"] = "not written: no scored pairs"
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
