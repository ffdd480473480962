# Text readers, the HDF5 dataset format and `argent prepare` (io/readers, io/dataset, jobs/prepare).
argent_test(test_readers ${CMAKE_SOURCE_DIR}/tests/unit/test_readers.c LIBS argent_io)
