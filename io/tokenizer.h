/* BERT WordPiece tokenizer (uncased), exactly Hugging Face's BertTokenizer(do_lower_case=True)
 * in its Python form (BertTokenizerLegacy in transformers v5, BertTokenizer in v4):
 * split off special tokens written in the text, clean (drop NUL, U+FFFD, every C* category
 * except \t \n \r; Zs and \t \n \r -> space), spaces around CJK ideographs, lower-case
 * (Python's str.lower: U+0130 and final sigma included), NFD + drop Mn, split on whitespace
 * and punctuation, greedy longest-match WordPiece with "##" continuations, [UNK] for words
 * over 100 characters or with no match.
 *
 * Two levels: text -> word pieces (no special tokens, untruncated), and pieces -> model
 * input ([CLS] a [SEP] (b [SEP])) with token types and longest_first truncation. Datasets
 * store the pieces, so any max length can be chosen at training time.
 *
 * Checked (tests/unit/test_tokenizer.c): identical ids on every sentence of ../shared/data
 * and on hand-written edge cases; identical basic-tokenizer words on every assigned code
 * point. Known differences from the Python tokenizer: code points assigned after Unicode
 * 14.0 (Python 3.11's unicodedata; argent uses utf8proc's 15.0) are kept where Python drops
 * them as unassigned (4,447 code points, none in the data); a vocab lacking one of the five
 * special tokens makes Hugging Face add it with a new id, argent treats it as plain text.
 * Hugging Face's Rust tokenizer (AutoTokenizer) itself differs from its Python one on final
 * sigma (always σ), a token that equals a special token only after cleaning ("[SE\x01P]"),
 * unassigned code points and newer characters (older Unicode tables), and text_pair ""
 * (no pair); none of these occur in the data, where both give the same pieces. */
#ifndef ARGENT_IO_TOKENIZER_H
#define ARGENT_IO_TOKENIZER_H
#include <stddef.h>
#include <stdint.h>

typedef struct ag_tokenizer ag_tokenizer;

/* Load a vocab.txt (one token per line, line number = id; lines end at \n, \r\n or \r as in
 * Python's text mode; a piece listed twice keeps its last id). The vocab must contain
 * [UNK], [CLS] and [SEP]. NULL on failure (ag_errmsg()). do_lower_case = 0 gives the cased
 * Python tokenizer (NFC, no lower-casing or accent stripping; it allocates per text that
 * has non-ASCII characters; the uncased path allocates only to grow *ids). */
ag_tokenizer *ag_tokenizer_load(const char *vocab_path, int do_lower_case);
void ag_tokenizer_free(ag_tokenizer *tk);
/* Number of ids (lines of the vocab file). */
int ag_tokenizer_vocab_size(const ag_tokenizer *tk);
/* Special ids looked up in the vocab ([PAD] [UNK] [CLS] [SEP] [MASK]); -1 if absent. */
int32_t ag_tok_pad(const ag_tokenizer *tk);
int32_t ag_tok_unk(const ag_tokenizer *tk);
int32_t ag_tok_cls(const ag_tokenizer *tk);
int32_t ag_tok_sep(const ag_tokenizer *tk);
/* Token string for an id (NULL if out of range). */
const char *ag_tok_piece(const ag_tokenizer *tk, int32_t id);
/* sha256 hex of the vocab file's bytes (65 chars with NUL), for dataset provenance. */
const char *ag_tokenizer_vocab_hash(const ag_tokenizer *tk);

/* Text (UTF-8, len bytes) -> word-piece ids, appended to *ids (realloc'd; *n and *cap
 * updated). Returns 0, or -1 on invalid UTF-8 with ag_err() naming the byte offset (then
 * *n is left as it was). As in Hugging Face, a special token written literally in the text
 * ("[SEP]", case-sensitive) becomes its id. Thread-safe: tk is only read. */
int ag_tok_wordpieces(const ag_tokenizer *tk, const char *text, size_t len,
                      int32_t **ids, int *n, int *cap);

/* Pieces -> "[CLS] a [SEP]" truncated to max_len. Writes ids/types (room for max_len;
 * types may be NULL); returns the length (or -1, ag_err, if max_len < 2). */
int ag_tok_build_single(const ag_tokenizer *tk, const int32_t *a, int na, int max_len,
                        int32_t *ids, int32_t *types);
/* Pieces -> "[CLS] a [SEP] b [SEP]", longest_first truncation to max_len: pieces come off
 * the end of the longer side until the pair fits. Returns the length (or -1, ag_err, if
 * max_len < 3). The two Hugging Face implementations differ in where the odd piece goes
 * when both sides must be cut and max_len - 3 is odd (4,420 of the 44,086 data pairs at
 * max_len 32); this follows the Rust one (AG_TRUNC_FAST), which is what AutoTokenizer,
 * transformers' BertTokenizer (v5) and sentence-transformers use. An empty b (nb = 0)
 * still gives "[CLS] a [SEP] [SEP]" (the Rust tokenizer drops a text_pair of ""). */
int ag_tok_build_pair(const ag_tokenizer *tk, const int32_t *a, int na, const int32_t *b, int nb,
                      int max_len, int32_t *ids, int32_t *types);

/* ---- extensions ---- */

typedef enum {
    /* Rust tokenizers (BertTokenizerFast; BertTokenizer in transformers v5): when both sides
     * are cut, the shorter keeps (max_len-3)/2 and the longer (b on ties) the rest. */
    AG_TRUNC_FAST = 0,
    /* Python truncate_sequences (BertTokenizerLegacy; BertTokenizer in transformers v4): one
     * piece at a time from the longer side, from b on ties, so a keeps the odd one. */
    AG_TRUNC_LEGACY = 1,
} ag_trunc_style;

int ag_tok_build_pair_style(const ag_tokenizer *tk, const int32_t *a, int na, const int32_t *b, int nb,
                            int max_len, ag_trunc_style style, int32_t *ids, int32_t *types);
/* [MASK] id, -1 if the vocab has none. */
int32_t ag_tok_mask(const ag_tokenizer *tk);
/* Id of a vocab piece (exact string, "##x" for continuations), -1 if absent. */
int32_t ag_tok_id(const ag_tokenizer *tk, const char *piece);
/* The do_lower_case the tokenizer was loaded with. */
int ag_tokenizer_lower(const ag_tokenizer *tk);
/* Diagnostics and tests: the words WordPiece sees (after cleaning, lower-casing, accent
 * stripping, punctuation splitting; special tokens as their strings; long words whole),
 * joined by single spaces. Returns a malloc'd string, or NULL with ag_err() on invalid
 * UTF-8 or input over 16 KB. */
char *ag_tok_basic(const ag_tokenizer *tk, const char *text, size_t len);
#endif
