/* BERT WordPiece tokenizer (uncased), exactly Hugging Face's BertTokenizer(do_lower_case=True):
 * clean (drop NUL, U+FFFD, controls; whitespace -> space), spaces around CJK ideographs,
 * lower-case, NFD + drop Mn, split on whitespace and punctuation, greedy longest-match
 * WordPiece with "##" continuations, [UNK] for words over 100 characters or with no match.
 *
 * Two levels: text -> word pieces (no special tokens, untruncated), and pieces -> model
 * input ([CLS] a [SEP] (b [SEP])) with token types and longest_first truncation. Datasets
 * store the pieces, so any max length can be chosen at training time. */
#ifndef ARGENT_IO_TOKENIZER_H
#define ARGENT_IO_TOKENIZER_H
#include <stddef.h>
#include <stdint.h>

typedef struct ag_tokenizer ag_tokenizer;

/* Load a vocab.txt (one token per line, line number = id). NULL on failure (ag_errmsg()). */
ag_tokenizer *ag_tokenizer_load(const char *vocab_path, int do_lower_case);
void ag_tokenizer_free(ag_tokenizer *tk);
int ag_tokenizer_vocab_size(const ag_tokenizer *tk);
/* Special ids looked up in the vocab ([PAD] [UNK] [CLS] [SEP] [MASK]). */
int32_t ag_tok_pad(const ag_tokenizer *tk);
int32_t ag_tok_unk(const ag_tokenizer *tk);
int32_t ag_tok_cls(const ag_tokenizer *tk);
int32_t ag_tok_sep(const ag_tokenizer *tk);
/* Token string for an id (NULL if out of range). */
const char *ag_tok_piece(const ag_tokenizer *tk, int32_t id);
/* sha256 hex of the vocab file's bytes (65 chars with NUL), for dataset provenance. */
const char *ag_tokenizer_vocab_hash(const ag_tokenizer *tk);

/* Text (UTF-8, len bytes) -> word-piece ids, appended to *ids (realloc'd; *n and *cap
 * updated). Returns 0, or -1 on invalid UTF-8 with ag_err() naming the byte offset. */
int ag_tok_wordpieces(const ag_tokenizer *tk, const char *text, size_t len,
                      int32_t **ids, int *n, int *cap);

/* Pieces -> "[CLS] a [SEP]" truncated to max_len. Writes ids/types (room for max_len);
 * returns the length. */
int ag_tok_build_single(const ag_tokenizer *tk, const int32_t *a, int na, int max_len,
                        int32_t *ids, int32_t *types);
/* Pieces -> "[CLS] a [SEP] b [SEP]", longest_first truncation to max_len (one token at a
 * time from the longer side, the second on ties, as Hugging Face does). Returns length. */
int ag_tok_build_pair(const ag_tokenizer *tk, const int32_t *a, int na, const int32_t *b, int nb,
                      int max_len, int32_t *ids, int32_t *types);
#endif
