"""Smaller and faster BERTs: distillation, int8 quantisation, pruning, export.

* `models`: classifier checkpoints, the head-pruned encoder, CPU throughput.
* `distill`: soft-target / hidden-state losses, student initialisation, the
  teacher-in-the-step training job.
* `quantize`: post-training int8 through Qwix; the quantised checkpoint format.
* `prune`: magnitude pruning on a schedule, attention-head importance and
  structured head pruning.
* `export`: a TensorFlow SavedModel with the WordPiece tokenizer in the graph.

This is a jobs-layer package: it may import the core, data and tokenization,
never the commands.
"""
