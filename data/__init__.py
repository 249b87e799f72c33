"""Name corpora: building the default corpus, reading and cleaning corpus files, the split, the vocabulary."""
