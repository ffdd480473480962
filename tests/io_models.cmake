# Safetensors, checkpoints, Hugging Face import/export (io/safetensors, io/checkpoint,
# io/hfmodel, jobs/import, jobs/export).
argent_test(test_safetensors unit/test_safetensors.c LIBS argent_io)
argent_test(test_checkpoint unit/test_checkpoint.c LIBS argent_io)
