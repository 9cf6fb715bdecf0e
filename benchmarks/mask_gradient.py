"""What the task loss tells a trained generator: the gradient of the loss with respect to the
mask at causal elements, decoys and background, on synthetic genes with known truth.

    python benchmarks/mask_gradient.py RUN/checkpoints/best.ckpt --synth bench_out/discovery/synth

For every gene of ``--split`` (default the training genes, what the generator learns from) the
mask the model would use at inference is made a leaf, the predictor and the task loss are run,
and ``d loss / d mask`` is collected per position class (the gene's R_ag elements, its decoys
inside signal peaks, everything else outside the promoter). A generator learns to rank causal
elements above decoys only if this gradient is consistently more negative at causal positions
(more mask, lower loss) than at decoys: the table gives the mean, the mean absolute value and
their ratio (1: the same sign at every position and gene; near 0: the sign follows each gene's
residual and averages out), and the share of genes whose summed gradient over their causal
elements is negative.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--synth", required=True, help="folder written by `seq2exp synth` (manifest.yaml)")
    p.add_argument("--cell-type", default="synthA")
    p.add_argument("--split", default="train")
    p.add_argument("--max-genes", type=int, default=200)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    from seq2exp_plugin.data.genes import read_gene_table
    from seq2exp_plugin.data.synth import load_manifest
    from seq2exp_plugin.discover.recovery import causal_vs_decoy_labels, gene_windows, read_truth, truth_labels
    from seq2exp_plugin.train.evaluate import load_run
    from seq2exp_plugin.train.fit import make_dataset

    args = parse_args(argv)
    module, run = load_run(args.checkpoint)
    net = module.net.eval()
    manifest = load_manifest(args.synth)
    promoter = net.config.mask.promoter_keep
    table = read_gene_table(manifest["genes"]["table"])
    windows = gene_windows(table.obs[table.obs["split"] == args.split], window=run.data.window)
    truth = read_truth(manifest["truth"]["cells"][args.cell_type])
    labels = truth_labels(truth, windows, exclude_center=promoter, blacklist=manifest["blacklist"])
    in_peaks = causal_vs_decoy_labels(truth, windows, exclude_center=promoter, blacklist=manifest["blacklist"])
    dataset = make_dataset(run, args.split, require_target=True)

    classes = ("causal", "decoy", "background")
    grads = {c: [] for c in classes}
    masks = {c: [] for c in classes}
    causal_sums = []
    for i, gene in enumerate(dataset.gene_ids[: args.max_genes]):
        item = dataset[i]
        seq, signals, features = (item[k][None].float() for k in ("seq", "signals", "features"))
        blacklist = item["blacklist"][None]
        with torch.no_grad():
            mask = net.generator(seq, signals, blacklist).mask
        mask.requires_grad_(True)
        loss = F.smooth_l1_loss(net.predictor(seq, signals, features, mask), item["target"].float()[None])
        (grad,) = torch.autograd.grad(loss, mask)
        grad, value = grad[0].numpy(), mask[0].detach().numpy()
        select = {"causal": in_peaks[gene] == 1, "decoy": in_peaks[gene] == 0,
                  "background": (labels[gene] == 0) & (in_peaks[gene] < 0)}
        for c in classes:
            grads[c].append(grad[select[c]])
            masks[c].append(value[select[c]])
        if select["causal"].any():
            causal_sums.append(grad[select["causal"]].sum())

    rows = {}
    print(f"{args.checkpoint}: {len(causal_sums)} of {min(len(dataset), args.max_genes)} {args.split} genes "
          "have causal elements\n")
    print("| positions | n | mean d loss / d mask | mean absolute | ratio | mean mask |")
    print("|---|---|---|---|---|---|")
    for c in classes:
        g, m = np.concatenate(grads[c]), np.concatenate(masks[c])
        rows[c] = {"n": int(g.size), "mean": float(g.mean()), "abs": float(np.abs(g).mean()),
                   "mask": float(m.mean())}
        rows[c]["ratio"] = rows[c]["mean"] / rows[c]["abs"] if rows[c]["abs"] > 0 else 0.0
        print(f"| {c} | {g.size} | {g.mean():+.2e} | {np.abs(g).mean():.2e} | {rows[c]['ratio']:+.3f} | {m.mean():.3f} |")
    share = float(np.mean(np.array(causal_sums) < 0)) if causal_sums else float("nan")
    print(f"\ngenes whose gradient summed over their causal elements is negative: {share:.1%}")
    return {"classes": rows, "causal_negative_share": share}


if __name__ == "__main__":
    main()
