"""Pre-training data: corpora, vocabularies, create-data, the tf.data pipeline.

NumPy and TensorFlow only: nothing here imports JAX or the model."""
