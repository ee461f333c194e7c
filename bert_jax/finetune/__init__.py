"""Fine-tuning and evaluation on GLUE, SQuAD and CoNLL NER (docs/finetuning.md).

Readers (`glue`, `squad`, `ner`) turn files into NumPy features and may use
TensorFlow (the tokenizer); `step` holds the jitted losses and updates and
imports no TensorFlow; `trainer` runs a task end to end; `probe` is the
small fine-tune the pre-training loop calls.
"""
