"""Kipoi dataloader of Seq2Exp: one TSS-centred window per gene (description: dataloader.yaml).

Thin: windows come from ``seq2exp_plugin.data.windows.WindowDataset`` through
``seq2exp_plugin.adapters.kipoi.KipoiWindows``; importing that module also applies the kipoi
writer compatibility shim (numpy 2), and this file turns on its one-line error reporting.

The class carries its description (read from ``dataloader.yaml`` beside this file), so it also
works where Kipoi imports it directly (the model group's ``default_dataloader``).
"""

import os

from kipoi.data import Dataset
from kipoi.specs import DataLoaderDescription

from seq2exp_plugin.adapters.kipoi import (DATALOADER_SIGNALS, KipoiWindows, inputs_from_checkpoint,
                                           resolve_input_path, resolve_weights)
from seq2exp_plugin.adapters.kipoi_patches import install_excepthook

install_excepthook()  # kipoi prints our user errors in one line

_HERE = os.path.dirname(os.path.realpath(__file__))


class Seq2ExpDataLoader(Dataset):
    """Seq2Exp inputs per gene; see dataloader.yaml for the arguments and the output schema."""

    #: an argument that is not in dataloader.yaml is an error, not kipoi's warning
    #: (seq2exp_plugin.adapters.kipoi patches kipoi.pipeline.validate_kwargs to read this)
    strict_arguments = True

    # every argument has a default so that a missing one is reported by KipoiWindows in one line
    # (the Demo entry supplies all files; K562/GM12878 users must)
    def __init__(self, fasta_file=None, h3k27ac=None, dnase=None, hic=None, genes=None, tss_bed=None,
                 cell_type="K562", window=200000, gene_ids=None, blacklist=None, halflife=None,
                 rc_minus_strand=None, allow_missing_chroms=False, hic_options=None, entry=None,
                 weights=None):
        args = dict(fasta_file=fasta_file, h3k27ac=h3k27ac, dnase=dnase, hic=hic, genes=genes,
                    tss_bed=tss_bed, blacklist=blacklist, halflife=halflife, weights=weights)
        # relative paths: the working directory first, then the folder Kipoi ran the model group
        # from (an entry's bundled example files are relative to it)
        p = {k: resolve_input_path(v, type(self).source_dir) for k, v in args.items()}
        # the entry's checkpoint (as the model finds it) says how its windows were read
        checkpoint = None if entry is None else resolve_weights(str(entry), p["weights"])
        rc, blacklist, hic_options = inputs_from_checkpoint(checkpoint, rc_minus_strand,
                                                            p["blacklist"], hic_options)
        self.windows = KipoiWindows(
            p["fasta_file"], {name: p[name] for name in DATALOADER_SIGNALS},
            cell_type=cell_type, window=window, genes=p["genes"], tss_bed=p["tss_bed"],
            gene_ids=gene_ids, blacklist=blacklist, halflife=p["halflife"],
            rc_minus_strand=rc, allow_missing_chroms=allow_missing_chroms,
            hic_options=hic_options)

    def __len__(self):
        return len(self.windows)

    def __getitem__(self, idx):
        return self.windows.item(idx)


Seq2ExpDataLoader._add_description_factory(
    DataLoaderDescription.load(os.path.join(_HERE, "dataloader.yaml")))
