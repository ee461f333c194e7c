"""Ahead-of-time compilation of the pre-training step for TPU and GPU topologies
(`bert-jax compile`): topologies and chip specs, the roofline, the compile."""
