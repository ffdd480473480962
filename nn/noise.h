/* TSDAE deletion noise (sentence-transformers DenoisingAutoEncoderDataset.delete): split a
 * sentence into words, keep each word with probability 1 - del_ratio, keep one random word
 * if none survives, re-join.
 *
 * Word split. ST splits with nltk's word_tokenize and re-joins with TreebankWordDetokenizer;
 * nltk is not installed here, and without it the ST dataset class refuses to run
 * (ImportError) rather than falling back to anything. So argent uses a documented,
 * deterministic rule instead: words are the maximal runs of non-whitespace, exactly as
 * Python's str.split() with no argument (whitespace = the 29 code points for which
 * str.isspace() is true: \t \n \v \f \r, U+001C..U+001F, space, U+0085, U+00A0, U+1680,
 * U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000, read from UTF-8), and the kept
 * words are joined with single spaces (" ".join). The difference from nltk: punctuation
 * stays attached to its word ("world!" is one word, where nltk deletes "world" and "!"
 * independently), and the output never changes the spelling inside a word.
 *
 * Randomness. Word i of a sentence is kept iff
 *   ag_rng_uniform(seed, AG_RNG_NOISE, sample, epoch, i) >= del_ratio
 * (probability exactly 1 - del_ratio on the generator's 24-bit grid; ST's numpy draw keeps
 * rand() > del_ratio, the same up to that grid), and when no word survives, word
 * floor(u32 * n / 2^32) is kept, with u32 = ag_rng_u32(seed, AG_RNG_NOISE, sample, epoch,
 * AG_NOISE_PICK_INDEX). `sample` is the sentence's global index in the corpus and `epoch`
 * the pass over it, so the noise is drawn afresh every epoch (the reference recipe's
 * behaviour, see reference.md section 5) and does not depend on rank count, batch
 * composition or where a run resumed. */
#ifndef ARGENT_NN_NOISE_H
#define ARGENT_NN_NOISE_H
#include <stddef.h>
#include <stdint.h>

#define AG_TSDAE_DEL_RATIO 0.6f  /* DenoisingAutoEncoderDataset.delete default */
/* The rng index of the "keep one random word" draw: far above any word index. */
#define AG_NOISE_PICK_INDEX (UINT64_C(1) << 62)

/* Deletion noise of one sentence (UTF-8, NUL-terminated) into out[out_cap], which must hold
 * strlen(text) + 1 bytes (the result is never longer than the input); out may be text
 * itself (in-place). A text without any word (empty or only whitespace) is copied
 * unchanged, as ST returns it. del_ratio in [0, 1]: 0 keeps every word (the output is then
 * the text with its whitespace normalised), 1 keeps exactly one. n_words and n_kept (may
 * be NULL) receive the word counts before and after. Returns 0, or -1 with ag_err (NULL
 * text or out, del_ratio out of range, out_cap too small); out is untouched on failure. */
int ag_noise_delete(const char *text, float del_ratio, uint64_t seed, uint64_t sample,
                    uint32_t epoch, char *out, size_t out_cap, int *n_words, int *n_kept);

#endif
