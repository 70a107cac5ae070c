/* Compiled kernels of the DMU's rules: what numpy does in a dozen whole-batch passes (sorts,
 * prefix sums, gathers) costs one pass per document here.
 *
 * Every kernel computes exactly what the numpy code before it did (bench/dmu_decisions.py compares
 * every decision and signature); each docstring says what it takes and writes.
 *
 * ngram_fractions: the Gopher n-gram repetition fractions of quality.ngram_fractions_batch, per
 * document with a hash table instead of a sort of the batch. The n-gram keys are the same
 * polynomials of the unit hashes (the sum of hash[p + k] * multiplier[k] mod 2^64), so equal keys
 * are equal n-grams exactly as in numpy, and the values are the same integer ratios.
 * english_words: the English rules' words and Gopher's alpha-word counts of a batch, one pass.
 * script_shingles: MinHash's shingle hashes of script-aware units (CJK characters, other words).
 * segment_counts: character class counts per text (language id's script counts, the Chinese rules').
 * line_statistics: the line and paragraph counts of the English and Chinese rules.
 * normalize_texts: normalize.py's normalize of the texts whose normal form is per character.
 * ascii_words: language id's English function-word counts.
 * minhash_signatures: MinHash's per-document minima over 112 permutations (AVX2 where there is).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

enum { KIND_NONE = 0, KIND_TOP = 1, KIND_DUP = 2 };

/* Scratch space for one document's n-grams of the current size, grown to the largest document. */
typedef struct {
    int64_t *pos;         /* start of each live n-gram, ascending */
    uint64_t *gram;       /* its key */
    int32_t *group;       /* its group (equal keys) */
    uint64_t *group_key;
    int64_t *group_first; /* the earliest start of the group */
    int64_t *group_count;
    int32_t *slots;       /* hash table: group + 1, 0 when empty */
    int64_t *char_prefix; /* characters before each unit */
    int32_t *cover;       /* +1 / -1 at the ends of repeated n-grams */
    int64_t capacity;
} Work;

static void work_free(Work *w) {
    free(w->pos); free(w->gram); free(w->group); free(w->group_key); free(w->group_first);
    free(w->group_count); free(w->slots); free(w->char_prefix); free(w->cover);
    memset(w, 0, sizeof *w);
}

static int64_t slot_count(int64_t n) {
    int64_t slots = 16;
    while (slots < 2 * n) {
        slots <<= 1;
    }
    return slots;
}

static int work_reserve(Work *w, int64_t units) {
    if (units <= w->capacity) {
        return 0;
    }
    work_free(w);
    w->pos = malloc(units * sizeof *w->pos);
    w->gram = malloc(units * sizeof *w->gram);
    w->group = malloc(units * sizeof *w->group);
    w->group_key = malloc(units * sizeof *w->group_key);
    w->group_first = malloc(units * sizeof *w->group_first);
    w->group_count = malloc(units * sizeof *w->group_count);
    w->slots = malloc(slot_count(units) * sizeof *w->slots);
    w->char_prefix = malloc((units + 1) * sizeof *w->char_prefix);
    w->cover = malloc((units + 1) * sizeof *w->cover);
    if (!w->pos || !w->gram || !w->group || !w->group_key || !w->group_first || !w->group_count || !w->slots
        || !w->char_prefix || !w->cover) {
        work_free(w);
        return -1;
    }
    w->capacity = units;
    return 0;
}

/* Groups the live n-grams (in position order, so a group's first member is its earliest) by key. */
static void group_keys(Work *w, int64_t live) {
    int64_t slots = slot_count(live);
    int shift = 64 - __builtin_ctzll((unsigned long long)slots);
    uint64_t mask = (uint64_t)slots - 1;
    memset(w->slots, 0, slots * sizeof *w->slots);
    int32_t groups = 0;
    for (int64_t i = 0; i < live; i++) {
        uint64_t key = w->gram[i];
        uint64_t s = (key * 0x9E3779B97F4A7C15ULL) >> shift;
        for (;;) {
            int32_t g = w->slots[s] - 1;
            if (g < 0) {
                w->slots[s] = groups + 1;
                w->group_key[groups] = key;
                w->group_first[groups] = w->pos[i];
                w->group_count[groups] = 1;
                w->group[i] = groups++;
                break;
            }
            if (w->group_key[g] == key) {
                w->group_count[g]++;
                w->group[i] = g;
                break;
            }
            s = (s + 1) & mask;
        }
    }
}

/* One document: out[j] for n = n_min + j. */
static void document_fractions(Work *w, const uint64_t *hash, const int64_t *length, int64_t units,
                               const uint64_t *multiplier, int64_t n_min, const uint8_t *kinds, int64_t sizes,
                               double *out) {
    for (int64_t j = 0; j < sizes; j++) {
        out[j] = 0.0;
    }
    int64_t n = n_min;
    int64_t live = units - n + 1;
    if (live < 2) {
        return;
    }
    w->char_prefix[0] = 0;
    for (int64_t u = 0; u < units; u++) {
        w->char_prefix[u + 1] = w->char_prefix[u] + length[u];
    }
    int64_t total = w->char_prefix[units] > 1 ? w->char_prefix[units] : 1;
    for (int64_t p = 0; p < live; p++) {
        uint64_t gram = 0;
        for (int64_t k = 0; k < n; k++) {
            gram += hash[p + k] * multiplier[k];
        }
        w->pos[p] = p;
        w->gram[p] = gram;
    }
    for (;;) {
        if (live < 2) {
            return;
        }
        group_keys(w, live);
        uint8_t kind = kinds[n - n_min];
        if (kind == KIND_TOP) {
            /* The highest count, then the n-gram that occurs first (datatrove's Counter.most_common). */
            int64_t best_count = 1, best_first = -1;
            for (int64_t i = 0; i < live; i++) {
                int32_t g = w->group[i];
                if (w->group_first[g] != w->pos[i]) {
                    continue; /* each group once, at its first member */
                }
                if (w->group_count[g] > best_count) {
                    best_count = w->group_count[g];
                    best_first = w->pos[i];
                }
            }
            if (best_first >= 0) {
                int64_t chars = w->char_prefix[best_first + n] - w->char_prefix[best_first];
                out[n - n_min] = (double)(chars * best_count) / (double)total;
            }
        } else if (kind == KIND_DUP) {
            /* The characters of units inside an n-gram that occurred before. */
            memset(w->cover, 0, (units + 1) * sizeof *w->cover);
            int any = 0;
            for (int64_t i = 0; i < live; i++) {
                if (w->group_first[w->group[i]] != w->pos[i]) {
                    w->cover[w->pos[i]] += 1;
                    w->cover[w->pos[i] + n] -= 1;
                    any = 1;
                }
            }
            if (any) {
                int64_t depth = 0, chars = 0;
                for (int64_t u = 0; u < units; u++) {
                    depth += w->cover[u];
                    if (depth > 0) {
                        chars += length[u];
                    }
                }
                if (chars) {
                    out[n - n_min] = (double)chars / (double)total;
                }
            }
        }
        if (n == n_min + sizes - 1) {
            return;
        }
        /* Only n-grams whose prefix repeats can repeat: keep those with n + 1 units left. */
        n++;
        int64_t kept = 0;
        for (int64_t i = 0; i < live; i++) {
            int64_t p = w->pos[i];
            if (w->group_count[w->group[i]] >= 2 && p + n <= units) {
                w->pos[kept] = p;
                w->gram[kept] = w->gram[i] + hash[p + n - 1] * multiplier[n - 1];
                kept++;
            }
        }
        live = kept;
    }
}

typedef struct {
    Py_buffer view;
    int held;
} Buffer;

static int get_buffer(PyObject *obj, Buffer *buf, Py_ssize_t itemsize, int writable, const char *name) {
    if (PyObject_GetBuffer(obj, &buf->view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0)) < 0) {
        return -1;
    }
    buf->held = 1;
    if (buf->view.itemsize != itemsize) {
        PyErr_Format(PyExc_TypeError, "%s: items of %zd bytes expected, got %zd", name, itemsize, buf->view.itemsize);
        return -1;
    }
    return 0;
}

static void release(Buffer *buf) {
    if (buf->held) {
        PyBuffer_Release(&buf->view);
        buf->held = 0;
    }
}

PyDoc_STRVAR(ngram_fractions_doc,
"ngram_fractions(hashes, lengths, offsets, multipliers, n_min, kinds, out)\n--\n\n"
"Per document d (units offsets[d]:offsets[d+1] of the uint64 hashes and int64 lengths) and size\n"
"n = n_min + j (j < len(kinds)), out[d * len(kinds) + j] = the top (kind 1) or duplicated (kind 2)\n"
"n-gram character fraction, 0.0 for kind 0. multipliers: uint64, at least n_min + len(kinds) - 1.");

static PyObject *ngram_fractions(PyObject *self, PyObject *args) {
    PyObject *hashes_obj, *lengths_obj, *offsets_obj, *multipliers_obj, *kinds_obj, *out_obj;
    Py_ssize_t n_min;
    if (!PyArg_ParseTuple(args, "OOOOnOO", &hashes_obj, &lengths_obj, &offsets_obj, &multipliers_obj, &n_min, &kinds_obj,
                          &out_obj)) {
        return NULL;
    }
    Buffer hashes = {0}, lengths = {0}, offsets = {0}, multipliers = {0}, kinds = {0}, out = {0};
    Work work = {0};
    PyObject *result = NULL;
    if (get_buffer(hashes_obj, &hashes, 8, 0, "hashes") < 0 || get_buffer(lengths_obj, &lengths, 8, 0, "lengths") < 0
        || get_buffer(offsets_obj, &offsets, 8, 0, "offsets") < 0
        || get_buffer(multipliers_obj, &multipliers, 8, 0, "multipliers") < 0
        || get_buffer(kinds_obj, &kinds, 1, 0, "kinds") < 0 || get_buffer(out_obj, &out, 8, 1, "out") < 0) {
        goto done;
    }
    Py_ssize_t units = hashes.view.len / 8, docs = offsets.view.len / 8 - 1, sizes = kinds.view.len;
    const int64_t *offset = offsets.view.buf;
    if (n_min < 1 || sizes < 1 || docs < 0 || lengths.view.len / 8 != units || out.view.len / 8 != docs * sizes
        || multipliers.view.len / 8 < n_min + sizes - 1) {
        PyErr_SetString(PyExc_ValueError, "ngram_fractions: inconsistent sizes");
        goto done;
    }
    int64_t largest = 0;
    for (Py_ssize_t d = 0; d < docs; d++) {
        if (offset[d] < 0 || offset[d + 1] < offset[d] || offset[d + 1] > units) {
            PyErr_SetString(PyExc_ValueError, "ngram_fractions: offsets must ascend inside the units");
            goto done;
        }
        if (offset[d + 1] - offset[d] > largest) {
            largest = offset[d + 1] - offset[d];
        }
    }
    if (work_reserve(&work, largest + 1) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t d = 0; d < docs; d++) {
        document_fractions(&work, (const uint64_t *)hashes.view.buf + offset[d], (const int64_t *)lengths.view.buf + offset[d],
                           offset[d + 1] - offset[d], multipliers.view.buf, n_min, kinds.view.buf, sizes,
                           (double *)out.view.buf + d * sizes);
    }
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    work_free(&work);
    release(&hashes); release(&lengths); release(&offsets); release(&multipliers); release(&kinds); release(&out);
    return result;
}

/* English words of a batch: the ``\w+(?:['’]\w+)*`` runs of each text (a ' or ’ between two word
 * characters joins them), hashed as sum of lower[cp[start + k]] * base^k mod 2^64, the stop words among
 * them (2-4 lowered codepoints packed 16 bits each), whether every character lowers to one alone
 * (``plain``), and Gopher's alpha words: the whitespace-separated tokens, and those with a letter. */
typedef struct {
    const uint32_t *cp;
    const uint8_t *flags;
    const uint64_t *lower;
    const uint8_t *single;
    const uint64_t *stop;
    Py_ssize_t stops;
    uint64_t base;
    uint8_t word, space, letter;
} WordsInput;

static int is_stop(const WordsInput *in, const uint32_t *cp, int64_t length) {
    if (length < 2 || length > 4) {
        return 0;
    }
    uint64_t packed = 0;
    for (int64_t k = 0; k < length; k++) {
        packed |= in->lower[cp[k]] << (16 * k);
    }
    for (Py_ssize_t i = 0; i < in->stops; i++) {
        if (in->stop[i] == packed) {
            return 1;
        }
    }
    return 0;
}

/* Text positions [begin, end) of the joined array: cp[begin - 1] and cp[end] are newlines. */
static void document_words(const WordsInput *in, int64_t begin, int64_t end, uint64_t *hash, int64_t *length, int64_t *words,
                           int64_t *chars, int64_t *stops, uint8_t *plain, int64_t *tokens, int64_t *with_letter) {
    const uint32_t *cp = in->cp;
    const uint8_t *flags = in->flags;
    int64_t n = 0, total = 0, stop = 0, token_count = 0, letter_tokens = 0;
    int odd = 0, in_token = 0, token_has_letter = 0;
    int64_t start = -1;
    for (int64_t i = begin; i <= end; i++) {
        int inside = 0;
        if (i < end) {
            uint32_t c = cp[i];
            if (c > 0xFFFF || !in->single[c]) {
                odd = 1;
            }
            inside = (flags[i] & in->word) != 0
                     || ((c == 0x27 || c == 0x2019) && (flags[i - 1] & in->word) && (flags[i + 1] & in->word));
            if (flags[i] & in->space) {
                if (in_token) {
                    token_count++;
                    letter_tokens += token_has_letter;
                }
                in_token = token_has_letter = 0;
            } else {
                in_token = 1;
                token_has_letter |= (flags[i] & in->letter) != 0;
            }
        } else if (in_token) {
            token_count++;
            letter_tokens += token_has_letter;
        }
        if (inside && start < 0) {
            start = i;
        } else if (!inside && start >= 0) {
            int64_t len = i - start;
            if (!odd) { /* a text with an odd character is lowered by str.lower in Python: its words are not used */
                uint64_t h = 0;
                for (int64_t k = i - 1; k >= start; k--) {
                    h = h * in->base + in->lower[cp[k]];
                }
                hash[n] = h;
                stop += is_stop(in, cp + start, len);
            }
            length[n] = len;
            total += len;
            n++;
            start = -1;
        }
    }
    *words = n;
    *chars = total;
    *stops = stop;
    *plain = !odd;
    *tokens = token_count;
    *with_letter = letter_tokens;
}

PyDoc_STRVAR(english_words_doc,
"english_words(cps, flags, bounds, lower, single, stop_codes, base, word, space, letter,\n"
"              hashes, lengths, first, chars, stops, plain, tokens, with_letter)\n--\n\n"
"Text d is cps[bounds[d] + 1 : bounds[d + 1]] (newlines around each). Its words are\n"
"hashes/lengths[first[d] : first[d + 1]] (hashes only where plain[d]); chars, stops, plain,\n"
"tokens (whitespace-separated) and with_letter (tokens with a letter) per text.");

static PyObject *english_words(PyObject *self, PyObject *args) {
    PyObject *objs[18];
    unsigned long long base;
    int word, space, letter;
    if (!PyArg_ParseTuple(args, "OOOOOOKiiiOOOOOOOO", &objs[0], &objs[1], &objs[2], &objs[3], &objs[4], &objs[5], &base, &word,
                          &space, &letter, &objs[10], &objs[11], &objs[12], &objs[13], &objs[14], &objs[15], &objs[16],
                          &objs[17])) {
        return NULL;
    }
    static const char *names[18] = {"cps", "flags", "bounds", "lower", "single", "stop_codes", "", "", "", "",
                                    "hashes", "lengths", "first", "chars", "stops", "plain", "tokens", "with_letter"};
    static const Py_ssize_t sizes[18] = {4, 1, 8, 8, 1, 8, 0, 0, 0, 0, 8, 8, 8, 8, 8, 1, 8, 8};
    Buffer b[18];
    memset(b, 0, sizeof b);
    PyObject *result = NULL;
    for (int i = 0; i < 18; i++) {
        if (sizes[i] && get_buffer(objs[i], &b[i], sizes[i], i >= 10, names[i]) < 0) {
            goto done;
        }
    }
    Py_ssize_t n_cps = b[0].view.len / 4, docs = b[2].view.len / 8 - 1, capacity = b[10].view.len / 8;
    const int64_t *bounds = b[2].view.buf;
    if (docs < 0 || b[1].view.len != n_cps || b[3].view.len / 8 != 0x10000 || b[4].view.len != 0x10000
        || b[11].view.len / 8 < capacity || b[12].view.len / 8 != docs + 1 || b[13].view.len / 8 != docs
        || b[14].view.len / 8 != docs || b[15].view.len != docs || b[16].view.len / 8 != docs || b[17].view.len / 8 != docs
        || capacity < n_cps) {
        PyErr_SetString(PyExc_ValueError, "english_words: inconsistent sizes");
        goto done;
    }
    for (Py_ssize_t d = 0; d <= docs; d++) {
        if (bounds[d] < 0 || bounds[d] >= n_cps || (d && bounds[d] <= bounds[d - 1])) {
            PyErr_SetString(PyExc_ValueError, "english_words: bounds must ascend inside the codepoints");
            goto done;
        }
    }
    for (Py_ssize_t d = 0; d <= docs; d++) {
        if (((const uint32_t *)b[0].view.buf)[bounds[d]] != '\n') {
            PyErr_SetString(PyExc_ValueError, "english_words: a newline must stand at every bound");
            goto done;
        }
    }
    WordsInput in = {b[0].view.buf, b[1].view.buf, b[3].view.buf, b[4].view.buf, b[5].view.buf, b[5].view.len / 8,
                     (uint64_t)base, (uint8_t)word, (uint8_t)space, (uint8_t)letter};
    int64_t *first = b[12].view.buf;
    Py_BEGIN_ALLOW_THREADS
    first[0] = 0;
    for (Py_ssize_t d = 0; d < docs; d++) {
        int64_t words;
        document_words(&in, bounds[d] + 1, bounds[d + 1], (uint64_t *)b[10].view.buf + first[d],
                       (int64_t *)b[11].view.buf + first[d], &words, (int64_t *)b[13].view.buf + d,
                       (int64_t *)b[14].view.buf + d, (uint8_t *)b[15].view.buf + d, (int64_t *)b[16].view.buf + d,
                       (int64_t *)b[17].view.buf + d);
        first[d + 1] = first[d] + words;
    }
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    for (int i = 0; i < 18; i++) {
        release(&b[i]);
    }
    return result;
}

/* MinHash shingles of script-aware units: per document, every codepoint of class 2 (CJK) is a unit,
 * every run of class 1 (other word characters; codepoints above the BMP too) is one, class 0
 * separates. A unit's hash is sum cp[j] * base^(end - 1 - j) mod 2^64, a shingle's the splitmix64
 * finalizer of sum unit[p + k] * multiplier[k % multipliers], as minhash.py's numpy version was. */
static uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xBF58476D1CE4E5B9ULL;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBULL;
    x ^= x >> 31;
    return x;
}

PyDoc_STRVAR(script_shingles_doc,
"script_shingles(cps, bounds, classes, base, multipliers, ngram, units, hashes, counts) -> int\n--\n\n"
"Document d is cps[bounds[d] : bounds[d + 1] - 1]. Writes its shingles' hashes after the previous\n"
"documents' into hashes and their number into counts[d]; units is scratch space (uint64, at least\n"
"as long as cps). Returns the number of shingles.");

static PyObject *script_shingles(PyObject *self, PyObject *args) {
    PyObject *cps_obj, *bounds_obj, *classes_obj, *multipliers_obj, *units_obj, *hashes_obj, *counts_obj;
    unsigned long long base;
    Py_ssize_t ngram;
    if (!PyArg_ParseTuple(args, "OOOKOnOOO", &cps_obj, &bounds_obj, &classes_obj, &base, &multipliers_obj, &ngram, &units_obj,
                          &hashes_obj, &counts_obj)) {
        return NULL;
    }
    Buffer cps = {0}, bounds = {0}, classes = {0}, multipliers = {0}, units = {0}, hashes = {0}, counts = {0};
    PyObject *result = NULL;
    if (get_buffer(cps_obj, &cps, 4, 0, "cps") < 0 || get_buffer(bounds_obj, &bounds, 8, 0, "bounds") < 0
        || get_buffer(classes_obj, &classes, 1, 0, "classes") < 0
        || get_buffer(multipliers_obj, &multipliers, 8, 0, "multipliers") < 0
        || get_buffer(units_obj, &units, 8, 1, "units") < 0 || get_buffer(hashes_obj, &hashes, 8, 1, "hashes") < 0
        || get_buffer(counts_obj, &counts, 8, 1, "counts") < 0) {
        goto done;
    }
    Py_ssize_t n_cps = cps.view.len / 4, docs = bounds.view.len / 8 - 1, n_mult = multipliers.view.len / 8;
    const int64_t *bound = bounds.view.buf;
    if (ngram < 1 || docs < 0 || n_mult < 1 || classes.view.len != 0x10000 || counts.view.len / 8 != docs
        || units.view.len / 8 < n_cps || hashes.view.len / 8 < n_cps) {
        PyErr_SetString(PyExc_ValueError, "script_shingles: inconsistent sizes");
        goto done;
    }
    for (Py_ssize_t d = 0; d < docs; d++) {
        if (bound[d] < 0 || bound[d + 1] <= bound[d] || bound[d + 1] - 1 > n_cps) {
            PyErr_SetString(PyExc_ValueError, "script_shingles: bounds must ascend inside the codepoints");
            goto done;
        }
    }
    const uint32_t *cp = cps.view.buf;
    const uint8_t *cls = classes.view.buf;
    const uint64_t *mult = multipliers.view.buf;
    uint64_t *unit = units.view.buf, *out = hashes.view.buf;
    int64_t *count = counts.view.buf;
    int64_t written = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t d = 0; d < docs; d++) {
        int64_t n_units = 0;
        int in_word = 0;
        for (int64_t i = bound[d]; i < bound[d + 1] - 1; i++) {
            uint32_t c = cp[i];
            uint8_t k = c > 0xFFFF ? 1 : cls[c];
            if (k == 1) {
                if (in_word) {
                    unit[n_units - 1] = unit[n_units - 1] * base + c;
                } else {
                    unit[n_units++] = c;
                    in_word = 1;
                }
            } else {
                in_word = 0;
                if (k == 2) {
                    unit[n_units++] = c;
                }
            }
        }
        int64_t shingles = n_units - ngram + 1;
        if (shingles < 0) {
            shingles = 0;
        }
        for (int64_t p = 0; p < shingles; p++) {
            uint64_t gram = 0;
            for (Py_ssize_t k = 0; k < ngram; k++) {
                gram += unit[p + k] * mult[k % n_mult];
            }
            out[written + p] = mix64(gram);
        }
        count[d] = shingles;
        written += shingles;
    }
    Py_END_ALLOW_THREADS
    result = PyLong_FromLongLong(written);
done:
    release(&cps); release(&bounds); release(&classes); release(&multipliers); release(&units); release(&hashes);
    release(&counts);
    return result;
}

PyDoc_STRVAR(segment_counts_doc,
"segment_counts(values, bounds, masks, out)\n--\n\n"
"out[j * docs + d] = how many of values[bounds[d] : bounds[d + 1]] (uint8) have a bit of masks[j]:\n"
"the character class counts of every text of a batch in one pass.");

static PyObject *segment_counts(PyObject *self, PyObject *args) {
    PyObject *values_obj, *bounds_obj, *masks_obj, *out_obj;
    if (!PyArg_ParseTuple(args, "OOOO", &values_obj, &bounds_obj, &masks_obj, &out_obj)) {
        return NULL;
    }
    Buffer values = {0}, bounds = {0}, masks = {0}, out = {0};
    PyObject *result = NULL;
    if (get_buffer(values_obj, &values, 1, 0, "values") < 0 || get_buffer(bounds_obj, &bounds, 8, 0, "bounds") < 0
        || get_buffer(masks_obj, &masks, 1, 0, "masks") < 0 || get_buffer(out_obj, &out, 8, 1, "out") < 0) {
        goto done;
    }
    Py_ssize_t n = values.view.len, docs = bounds.view.len / 8 - 1, k = masks.view.len;
    const int64_t *bound = bounds.view.buf;
    if (docs < 0 || k < 1 || k > 8 || out.view.len / 8 != k * docs) {
        PyErr_SetString(PyExc_ValueError, "segment_counts: inconsistent sizes (1 to 8 masks)");
        goto done;
    }
    for (Py_ssize_t d = 0; d < docs; d++) {
        if (bound[d] < 0 || bound[d + 1] < bound[d] || bound[d + 1] > n) {
            PyErr_SetString(PyExc_ValueError, "segment_counts: bounds must ascend inside the values");
            goto done;
        }
    }
    const uint8_t *value = values.view.buf, *mask = masks.view.buf;
    int64_t *count = out.view.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t d = 0; d < docs; d++) {
        int64_t c[8] = {0};
        for (int64_t i = bound[d]; i < bound[d + 1]; i++) {
            uint8_t v = value[i];
            for (Py_ssize_t j = 0; j < k; j++) {
                c[j] += (v & mask[j]) != 0;
            }
        }
        for (Py_ssize_t j = 0; j < k; j++) {
            count[j * docs + d] = c[j];
        }
    }
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    release(&values); release(&bounds); release(&masks); release(&out);
    return result;
}

/* Line and paragraph statistics of the English and Chinese rules (quality.LineStats): one pass per
 * text instead of str methods over a list of lines. A line is a piece between newlines with a
 * non-space character (``filter(str.strip, text.split("\n"))``), a paragraph a piece between runs of
 * two or more newlines with one; repeats are exact (hash, then compare the codepoints). */
enum {
    ST_LINES, ST_LINE_CHARS, ST_LINE_DUP, ST_LINE_DUP_CHARS, ST_BULLET, ST_ELLIPSIS, ST_PUNCT, ST_SHORT, ST_MENU,
    ST_ZH_SHORT, ST_PARAS, ST_PARA_CHARS, ST_PARA_DUP, ST_PARA_DUP_CHARS, ST_SENTENCES, ST_NEWLINES, ST_COUNT
};

typedef struct {
    int64_t *start, *length;
    uint64_t *key;
    int32_t *slots;
    int64_t capacity, count, slot_mask;
} SpanSet;

static int span_set_reserve(SpanSet *set, int64_t n) {
    if (n <= set->capacity) {
        return 0;
    }
    free(set->start); free(set->length); free(set->key); free(set->slots);
    int64_t slots = slot_count(n);
    set->start = malloc(n * sizeof *set->start);
    set->length = malloc(n * sizeof *set->length);
    set->key = malloc(n * sizeof *set->key);
    set->slots = malloc(slots * sizeof *set->slots);
    set->capacity = n;
    if (!set->start || !set->length || !set->key || !set->slots) {
        set->capacity = 0;
        return -1;
    }
    return 0;
}

static void span_set_free(SpanSet *set) {
    free(set->start); free(set->length); free(set->key); free(set->slots);
}

static void span_set_clear(SpanSet *set, int64_t expected) {
    int64_t slots = slot_count(expected);
    set->slot_mask = slots - 1;
    memset(set->slots, 0, slots * sizeof *set->slots);
    set->count = 0;
}

/* Adds cp[start : start + length]; returns 1 when an equal span was there already. */
static int span_set_add(SpanSet *set, const uint32_t *cp, int64_t start, int64_t length) {
    uint64_t key = 0x9E3779B97F4A7C15ULL ^ (uint64_t)length;
    for (int64_t i = 0; i < length; i++) {
        key = (key ^ cp[start + i]) * 0x100000001B3ULL;
    }
    key = mix64(key);
    uint64_t s = key & (uint64_t)set->slot_mask;
    for (;;) {
        int32_t g = set->slots[s] - 1;
        if (g < 0) {
            set->slots[s] = (int32_t)(set->count + 1);
            set->start[set->count] = start;
            set->length[set->count] = length;
            set->key[set->count] = key;
            set->count++;
            return 0;
        }
        if (set->key[g] == key && set->length[g] == length
            && memcmp(cp + set->start[g], cp + start, length * sizeof *cp) == 0) {
            return 1;
        }
        s = (s + 1) & (uint64_t)set->slot_mask;
    }
}

static int is_bullet(uint32_t c) {
    return c == 0x2022 || c == 0x25CF || c == 0x25CB || c == 0x25A0 || c == 0x25A1 || c == 0x25AA || c == 0x25AB
           || c == 0x2013 || c == '-' || c == '*' || c == 0xB7;
}

static int is_terminal(uint32_t c) {
    return c == '.' || c == '!' || c == '?' || c == '"' || c == '\'' || c == 0x201D || c == 0x2019 || c == 0x3002
           || c == 0xFF01 || c == 0xFF1F;
}

static int is_sentence_end(uint32_t c) {
    return c == '.' || c == '!' || c == '?' || c == 0x3002 || c == 0xFF01 || c == 0xFF1F;
}

static int is_menu_separator(uint32_t c) {
    return c == '|' || c == 0xB7 || c == 0x2022 || c == 0xBB || c == 0x203A || c == '>' || c == '/';
}

/* One line cp[a:b] (no newline inside) with a non-space character at first..last. */
static void line_stats(const uint32_t *cp, const uint8_t *flags, uint8_t space, int64_t a, int64_t b, int64_t first,
                       int64_t last, SpanSet *lines, int64_t *st) {
    int64_t length = b - a;
    st[ST_LINES]++;
    st[ST_LINE_CHARS] += length;
    if (span_set_add(lines, cp, a, length)) {
        st[ST_LINE_DUP]++;
        st[ST_LINE_DUP_CHARS] += length;
    }
    st[ST_BULLET] += is_bullet(cp[first]);
    st[ST_ELLIPSIS] += cp[last] == 0x2026 || (last - 2 >= first && cp[last] == '.' && cp[last - 1] == '.' && cp[last - 2] == '.');
    st[ST_PUNCT] += is_terminal(cp[last]);
    st[ST_SHORT] += length <= 30;
    int64_t spaces = 0, separators = 0;
    for (int64_t i = a; i < b; i++) {
        spaces += cp[i] == ' ';
    }
    /* re.findall(r"\s[|·•»›>/]\s", line): non-overlapping, left to right. */
    for (int64_t i = a; i + 2 < b;) {
        if ((flags[i] & space) && is_menu_separator(cp[i + 1]) && (flags[i + 2] & space)) {
            separators++;
            i += 3;
        } else {
            i++;
        }
    }
    st[ST_MENU] += separators >= 2;
    st[ST_ZH_SHORT] += length - spaces < 10;
}

static void document_line_stats(const uint32_t *cp, const uint8_t *flags, uint8_t space, int64_t begin, int64_t end,
                                SpanSet *lines, SpanSet *paras, int64_t *st) {
    for (int j = 0; j < ST_COUNT; j++) {
        st[j] = 0;
    }
    int64_t pieces = 1; /* lines and paragraphs: at most one more than the newlines */
    for (int64_t i = begin; i < end; i++) {
        pieces += cp[i] == '\n';
    }
    st[ST_NEWLINES] = pieces - 1;
    span_set_clear(lines, pieces);
    span_set_clear(paras, pieces);
    int64_t line_start = begin, first = -1, last = -1;
    int64_t para_start = begin, para_has_text = 0;
    for (int64_t i = begin; i <= end; i++) {
        int at_end = i == end;
        uint32_t c = at_end ? '\n' : cp[i];
        if (!at_end) {
            if (is_sentence_end(c) && (i + 1 == end || (flags[i + 1] & space))) {
                st[ST_SENTENCES]++;
            }
        }
        if (c == '\n') {
            if (first >= 0) {
                line_stats(cp, flags, space, line_start, i, first, last, lines, st);
            }
            line_start = i + 1;
            first = last = -1;
            /* A paragraph ends at a run of two or more newlines (or at the end of the text). */
            int run_ends_paragraph = at_end || (i + 1 < end && cp[i + 1] == '\n' && (i == begin || cp[i - 1] != '\n'));
            if (run_ends_paragraph) {
                if (para_has_text) {
                    int64_t length = i - para_start;
                    st[ST_PARAS]++;
                    st[ST_PARA_CHARS] += length;
                    if (span_set_add(paras, cp, para_start, length)) {
                        st[ST_PARA_DUP]++;
                        st[ST_PARA_DUP_CHARS] += length;
                    }
                }
                para_has_text = 0;
            }
            if (!at_end && i > begin && cp[i - 1] == '\n') {
                para_start = i + 1; /* inside a run of newlines: the next paragraph starts after it */
            }
        } else if (!(flags[i] & space)) {
            if (first < 0) {
                first = i;
            }
            last = i;
            para_has_text = 1;
        }
    }
}

PyDoc_STRVAR(line_statistics_doc,
"line_statistics(cps, flags, bounds, space, out)\n--\n\n"
"Text d is cps[bounds[d] + 1 : bounds[d + 1]] (newlines around each); out[j * docs + d] is its\n"
"statistic j (quality.LineStats names them). space: the whitespace bit of flags.");

static PyObject *line_statistics(PyObject *self, PyObject *args) {
    PyObject *cps_obj, *flags_obj, *bounds_obj, *out_obj;
    int space;
    if (!PyArg_ParseTuple(args, "OOOiO", &cps_obj, &flags_obj, &bounds_obj, &space, &out_obj)) {
        return NULL;
    }
    Buffer cps = {0}, flags = {0}, bounds = {0}, out = {0};
    SpanSet lines = {0}, paras = {0};
    PyObject *result = NULL;
    if (get_buffer(cps_obj, &cps, 4, 0, "cps") < 0 || get_buffer(flags_obj, &flags, 1, 0, "flags") < 0
        || get_buffer(bounds_obj, &bounds, 8, 0, "bounds") < 0 || get_buffer(out_obj, &out, 8, 1, "out") < 0) {
        goto done;
    }
    Py_ssize_t n = cps.view.len / 4, docs = bounds.view.len / 8 - 1;
    const int64_t *bound = bounds.view.buf;
    const uint32_t *cp = cps.view.buf;
    if (docs < 0 || flags.view.len != n || out.view.len / 8 != ST_COUNT * docs) {
        PyErr_SetString(PyExc_ValueError, "line_statistics: inconsistent sizes");
        goto done;
    }
    int64_t largest = 0;
    for (Py_ssize_t d = 0; d <= docs; d++) {
        if (bound[d] < 0 || bound[d] >= n || (d && bound[d] <= bound[d - 1]) || cp[bound[d]] != '\n') {
            PyErr_SetString(PyExc_ValueError, "line_statistics: bounds must ascend inside the codepoints, each at a newline");
            goto done;
        }
        if (d && bound[d] - bound[d - 1] > largest) {
            largest = bound[d] - bound[d - 1];
        }
    }
    if (span_set_reserve(&lines, largest + 1) < 0 || span_set_reserve(&paras, largest + 1) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    int64_t *o = out.view.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t d = 0; d < docs; d++) {
        int64_t st[ST_COUNT];
        document_line_stats(cp, flags.view.buf, (uint8_t)space, bound[d] + 1, bound[d + 1], &lines, &paras, st);
        for (int j = 0; j < ST_COUNT; j++) {
            o[j * docs + d] = st[j];
        }
    }
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    span_set_free(&lines); span_set_free(&paras);
    release(&cps); release(&flags); release(&bounds); release(&out);
    return result;
}

/* normalize.py's normalize of the texts that need no unicodedata: per text, \r\n and \r become \n,
 * each character with a different normal form (CHANGED) becomes it, control characters go, runs
 * of spaces/tabs/no-break/ideographic spaces become one space, each line is stripped, runs of 3+
 * newlines become two, the text is stripped. A text with an UNSAFE character (combining marks,
 * jamo: the normal form is not per character), a codepoint above the BMP or no room left is
 * marked in ``fallback`` and left to Python. */
enum { NF_CONTROL = 1, NF_TAB_LIKE = 2, NF_OTHER_SPACE = 4, NF_CHANGED = 8, NF_UNSAFE = 16 };

typedef struct {
    const uint8_t *form_flags;  /* the normal form's table (CHANGED, UNSAFE) */
    const uint8_t *char_flags;  /* each character's own CONTROL / TAB_LIKE bits */
    const uint8_t *space;       /* str.isspace */
    const uint32_t *repl_start; /* a CHANGED character's normal form: repl[start : start + length] */
    const uint8_t *repl_length;
    const uint32_t *repl;
} NormalTables;

/* Writes the normalized text at out; returns its length, or -1 when Python must normalize it. */
static int64_t normalize_text(const NormalTables *t, const uint32_t *cp, int64_t n, uint32_t *out, int64_t room) {
    int64_t expanded = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t c = cp[i];
        if (c > 0xFFFF || (t->form_flags[c] & NF_UNSAFE)) {
            return -1;
        }
        expanded += (t->form_flags[c] & NF_CHANGED) ? t->repl_length[c] : 1;
    }
    if (expanded > room) {
        return -1;
    }
    /* Newlines, the normal form, controls out; runs of spaces to one. */
    int64_t m = 0;
    int in_run = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t c = cp[i];
        const uint32_t *parts = &c;
        int64_t count = 1;
        if (c == '\r') {
            c = '\n';
            if (i + 1 < n && cp[i + 1] == '\n') {
                i++;
            }
        } else if (t->form_flags[c] & NF_CHANGED) {
            parts = t->repl + t->repl_start[c];
            count = t->repl_length[c];
        }
        for (int64_t k = 0; k < count; k++) {
            uint32_t o = parts[k];
            uint8_t f = t->char_flags[o];
            if (f & NF_CONTROL) {
                continue;
            }
            if (o == ' ' || (f & NF_TAB_LIKE)) {
                if (!in_run) {
                    out[m++] = ' ';
                }
                in_run = 1;
            } else {
                out[m++] = o;
                in_run = 0;
            }
        }
    }
    /* Each line stripped (whitespace other than the newline), then runs of 3+ newlines to two. */
    int64_t w = 0, newlines = 0;
    for (int64_t a = 0; a <= m;) {
        int64_t b = a;
        while (b < m && out[b] != '\n') {
            b++;
        }
        int64_t first = a, last = b;
        while (first < last && t->space[out[first]]) {
            first++;
        }
        while (last > first && t->space[out[last - 1]]) {
            last--;
        }
        if (last > first) {
            newlines = 0;
            memmove(out + w, out + first, (last - first) * sizeof *out);
            w += last - first;
        }
        if (b == m) {
            break;
        }
        if (++newlines <= 2) {
            out[w++] = '\n';
        }
        a = b + 1;
    }
    /* The text stripped: only newlines can be left at its ends. */
    int64_t start = 0;
    while (start < w && out[start] == '\n') {
        start++;
    }
    while (w > start && out[w - 1] == '\n') {
        w--;
    }
    memmove(out, out + start, (w - start) * sizeof *out);
    return w - start;
}

PyDoc_STRVAR(normalize_texts_doc,
"normalize_texts(cps, bounds, form_flags, char_flags, space, repl_start, repl_length, repl, out, out_bounds, fallback)\n--\n\n"
"Text d is cps[bounds[d] : bounds[d + 1]]; its normalized form is out[out_bounds[d] : out_bounds[d + 1]],\n"
"or fallback[d] is 1 and Python normalizes it (its out range is empty).");

static PyObject *normalize_texts(PyObject *self, PyObject *args) {
    PyObject *objs[11];
    if (!PyArg_ParseTuple(args, "OOOOOOOOOOO", &objs[0], &objs[1], &objs[2], &objs[3], &objs[4], &objs[5], &objs[6], &objs[7],
                          &objs[8], &objs[9], &objs[10])) {
        return NULL;
    }
    static const char *names[11] = {"cps", "bounds", "form_flags", "char_flags", "space", "repl_start", "repl_length", "repl",
                                    "out", "out_bounds", "fallback"};
    static const Py_ssize_t sizes[11] = {4, 8, 1, 1, 1, 4, 1, 4, 4, 8, 1};
    Buffer b[11];
    memset(b, 0, sizeof b);
    PyObject *result = NULL;
    for (int i = 0; i < 11; i++) {
        if (get_buffer(objs[i], &b[i], sizes[i], i >= 8, names[i]) < 0) {
            goto done;
        }
    }
    Py_ssize_t n = b[0].view.len / 4, docs = b[1].view.len / 8 - 1, capacity = b[8].view.len / 4, n_repl = b[7].view.len / 4;
    const int64_t *bound = b[1].view.buf;
    if (docs < 0 || b[2].view.len != 0x10000 || b[3].view.len != 0x10000 || b[4].view.len != 0x10000
        || b[5].view.len / 4 != 0x10000 || b[6].view.len != 0x10000 || b[9].view.len / 8 != docs + 1 || b[10].view.len != docs) {
        PyErr_SetString(PyExc_ValueError, "normalize_texts: inconsistent sizes");
        goto done;
    }
    for (Py_ssize_t d = 0; d < docs; d++) {
        if (bound[d] < 0 || bound[d + 1] < bound[d] || bound[d + 1] > n) {
            PyErr_SetString(PyExc_ValueError, "normalize_texts: bounds must ascend inside the codepoints");
            goto done;
        }
    }
    const uint32_t *repl_start = b[5].view.buf;
    const uint8_t *repl_length = b[6].view.buf;
    for (Py_ssize_t c = 0; c < 0x10000; c++) {
        if ((((const uint8_t *)b[2].view.buf)[c] & NF_CHANGED) && (int64_t)repl_start[c] + repl_length[c] > n_repl) {
            PyErr_SetString(PyExc_ValueError, "normalize_texts: a replacement outside repl");
            goto done;
        }
    }
    NormalTables t = {b[2].view.buf, b[3].view.buf, b[4].view.buf, repl_start, repl_length, b[7].view.buf};
    uint32_t *out = b[8].view.buf;
    int64_t *out_bound = b[9].view.buf;
    uint8_t *fallback = b[10].view.buf;
    Py_BEGIN_ALLOW_THREADS
    int64_t used = 0;
    for (Py_ssize_t d = 0; d < docs; d++) {
        out_bound[d] = used;
        int64_t length = normalize_text(&t, (const uint32_t *)b[0].view.buf + bound[d], bound[d + 1] - bound[d], out + used,
                                        capacity - used);
        fallback[d] = length < 0;
        if (length > 0) {
            used += length;
        }
    }
    out_bound[docs] = used;
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    for (int i = 0; i < 11; i++) {
        release(&b[i]);
    }
    return result;
}

/* Language id's English function words: per text, the runs of a-z of its lowercase as ASCII
 * (``text.lower().encode("ascii", "replace")`` with everything but a-z a separator, split), and how
 * many of them are function words. letters[c]: the a-z letter c lowers to, 0 for a separator,
 * 0x80 | letter for a letter followed by a separator (İ lowers to i + a combining dot). */
static uint64_t pack_letter(uint64_t packed, uint8_t letter, int64_t length) {
    return length < 12 ? packed | ((uint64_t)(letter - 'a' + 1) << (5 * length)) : packed;
}

static int is_code(const uint64_t *codes, Py_ssize_t n, uint64_t code) {
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (codes[mid] < code) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < n && codes[lo] == code;
}

PyDoc_STRVAR(ascii_words_doc,
"ascii_words(cps, bounds, letters, codes, words, matches)\n--\n\n"
"Text d is cps[bounds[d] : bounds[d + 1]]; words[d] is the number of its a-z words, matches[d] of\n"
"those whose packed code (5 bits a letter, a = 1, at most 12 letters) is in the sorted codes.");

static PyObject *ascii_words(PyObject *self, PyObject *args) {
    PyObject *cps_obj, *bounds_obj, *letters_obj, *codes_obj, *words_obj, *matches_obj;
    if (!PyArg_ParseTuple(args, "OOOOOO", &cps_obj, &bounds_obj, &letters_obj, &codes_obj, &words_obj, &matches_obj)) {
        return NULL;
    }
    Buffer cps = {0}, bounds = {0}, letters = {0}, codes = {0}, words = {0}, matches = {0};
    PyObject *result = NULL;
    if (get_buffer(cps_obj, &cps, 4, 0, "cps") < 0 || get_buffer(bounds_obj, &bounds, 8, 0, "bounds") < 0
        || get_buffer(letters_obj, &letters, 1, 0, "letters") < 0 || get_buffer(codes_obj, &codes, 8, 0, "codes") < 0
        || get_buffer(words_obj, &words, 8, 1, "words") < 0 || get_buffer(matches_obj, &matches, 8, 1, "matches") < 0) {
        goto done;
    }
    Py_ssize_t n = cps.view.len / 4, docs = bounds.view.len / 8 - 1, n_codes = codes.view.len / 8;
    const int64_t *bound = bounds.view.buf;
    if (docs < 0 || letters.view.len != 0x10000 || words.view.len / 8 != docs || matches.view.len / 8 != docs) {
        PyErr_SetString(PyExc_ValueError, "ascii_words: inconsistent sizes");
        goto done;
    }
    for (Py_ssize_t d = 0; d < docs; d++) {
        if (bound[d] < 0 || bound[d + 1] < bound[d] || bound[d + 1] > n) {
            PyErr_SetString(PyExc_ValueError, "ascii_words: bounds must ascend inside the codepoints");
            goto done;
        }
    }
    const uint32_t *cp = cps.view.buf;
    const uint8_t *letter = letters.view.buf;
    const uint64_t *code = codes.view.buf;
    int64_t *word_count = words.view.buf, *match_count = matches.view.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t d = 0; d < docs; d++) {
        int64_t count = 0, found = 0, length = 0;
        uint64_t packed = 0;
        for (int64_t i = bound[d]; i <= bound[d + 1]; i++) {
            uint8_t l = i < bound[d + 1] && cp[i] <= 0xFFFF ? letter[cp[i]] : 0;
            if (l) {
                packed = pack_letter(packed, l & 0x7F, length++);
            }
            if ((!l || (l & 0x80)) && length) {
                count++;
                found += length <= 12 && is_code(code, n_codes, packed);
                length = 0;
                packed = 0;
            }
        }
        word_count[d] = count;
        match_count[d] = found;
    }
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    release(&cps); release(&bounds); release(&letters); release(&codes); release(&words); release(&matches);
    return result;
}

/* MinHash signatures: per document and permutation p, the minimum over its shingles x of
 * ((a[p] * x) mod 2^64) >> 32, the high half of the low product, which is
 * hi32(a_lo * x_lo) + a_lo * x_hi + a_hi * x_lo (mod 2^32). The shift commutes with the minimum, so
 * this equals minhash.py's numpy version (the 64-bit minima, shifted). AVX2 where the CPU has it. */
static void signature_scalar(const uint64_t *x, int64_t n, const uint32_t *a_lo, const uint32_t *a_hi, int64_t perms,
                             uint32_t *out) {
    for (int64_t p = 0; p < perms; p++) {
        out[p] = UINT32_MAX;
    }
    for (int64_t i = 0; i < n; i++) {
        uint32_t x_lo = (uint32_t)x[i], x_hi = (uint32_t)(x[i] >> 32);
        for (int64_t p = 0; p < perms; p++) {
            uint32_t v = (uint32_t)(((uint64_t)a_lo[p] * x_lo) >> 32) + a_lo[p] * x_hi + a_hi[p] * x_lo;
            out[p] = v < out[p] ? v : out[p];
        }
    }
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) static void signature_avx2(const uint64_t *x, int64_t n, const uint32_t *a_lo,
                                                            const uint32_t *a_hi, int64_t perms, uint32_t *out) {
    int64_t vectors = perms / 8;
    __m256i minima[32]; /* up to 256 permutations in registers and cache */
    if (vectors > 32) {
        signature_scalar(x, n, a_lo, a_hi, perms, out);
        return;
    }
    for (int64_t v = 0; v < vectors; v++) {
        minima[v] = _mm256_set1_epi32(-1);
    }
    const __m256i odd_halves = _mm256_set1_epi64x((long long)0xFFFFFFFF00000000ULL);
    for (int64_t i = 0; i < n; i++) {
        __m256i x_lo = _mm256_set1_epi32((int)(uint32_t)x[i]), x_hi = _mm256_set1_epi32((int)(uint32_t)(x[i] >> 32));
        for (int64_t v = 0; v < vectors; v++) {
            __m256i lo = _mm256_loadu_si256((const __m256i *)(a_lo + 8 * v));
            __m256i hi = _mm256_loadu_si256((const __m256i *)(a_hi + 8 * v));
            /* hi32(a_lo * x_lo) of the even lanes (shifted down into them) and of the odd lanes (in place) */
            __m256i even = _mm256_srli_epi64(_mm256_mul_epu32(lo, x_lo), 32);
            __m256i odd = _mm256_and_si256(_mm256_mul_epu32(_mm256_srli_epi64(lo, 32), x_lo), odd_halves);
            __m256i value = _mm256_add_epi32(_mm256_or_si256(even, odd),
                                             _mm256_add_epi32(_mm256_mullo_epi32(lo, x_hi), _mm256_mullo_epi32(hi, x_lo)));
            minima[v] = _mm256_min_epu32(minima[v], value);
        }
    }
    for (int64_t v = 0; v < vectors; v++) {
        _mm256_storeu_si256((__m256i *)(out + 8 * v), minima[v]);
    }
    if (perms > 8 * vectors) {
        uint32_t rest[8];
        signature_scalar(x, n, a_lo + 8 * vectors, a_hi + 8 * vectors, perms - 8 * vectors, rest);
        memcpy(out + 8 * vectors, rest, (perms - 8 * vectors) * sizeof *rest);
    }
}
#endif

PyDoc_STRVAR(minhash_signatures_doc,
"minhash_signatures(hashes, counts, a_lo, a_hi, out)\n--\n\n"
"Document d's shingles are the counts[d] hashes after the previous documents'; row d of out\n"
"(uint32, one column a permutation) becomes their signature, left as it is for a document without.");

static PyObject *minhash_signatures(PyObject *self, PyObject *args) {
    PyObject *hashes_obj, *counts_obj, *lo_obj, *hi_obj, *out_obj;
    if (!PyArg_ParseTuple(args, "OOOOO", &hashes_obj, &counts_obj, &lo_obj, &hi_obj, &out_obj)) {
        return NULL;
    }
    Buffer hashes = {0}, counts = {0}, a_lo = {0}, a_hi = {0}, out = {0};
    PyObject *result = NULL;
    if (get_buffer(hashes_obj, &hashes, 8, 0, "hashes") < 0 || get_buffer(counts_obj, &counts, 8, 0, "counts") < 0
        || get_buffer(lo_obj, &a_lo, 4, 0, "a_lo") < 0 || get_buffer(hi_obj, &a_hi, 4, 0, "a_hi") < 0
        || get_buffer(out_obj, &out, 4, 1, "out") < 0) {
        goto done;
    }
    Py_ssize_t n = hashes.view.len / 8, docs = counts.view.len / 8, perms = a_lo.view.len / 4;
    const int64_t *count = counts.view.buf;
    int64_t total = 0;
    for (Py_ssize_t d = 0; d < docs; d++) {
        if (count[d] < 0) {
            total = -1;
            break;
        }
        total += count[d];
    }
    if (perms < 1 || a_hi.view.len / 4 != perms || out.view.len / 4 != docs * perms || total != n) {
        PyErr_SetString(PyExc_ValueError, "minhash_signatures: inconsistent sizes");
        goto done;
    }
    int avx2 = 0;
#if defined(__x86_64__)
    avx2 = __builtin_cpu_supports("avx2");
#endif
    Py_BEGIN_ALLOW_THREADS
    const uint64_t *x = hashes.view.buf;
    for (Py_ssize_t d = 0; d < docs; d++) {
        uint32_t *row = (uint32_t *)out.view.buf + d * perms;
        if (count[d]) {
#if defined(__x86_64__)
            if (avx2) {
                signature_avx2(x, count[d], a_lo.view.buf, a_hi.view.buf, perms, row);
            } else
#endif
            {
                signature_scalar(x, count[d], a_lo.view.buf, a_hi.view.buf, perms, row);
            }
        }
        x += count[d];
    }
    Py_END_ALLOW_THREADS
    (void)avx2;
    result = Py_None;
    Py_INCREF(result);
done:
    release(&hashes); release(&counts); release(&a_lo); release(&a_hi); release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"ngram_fractions", ngram_fractions, METH_VARARGS, ngram_fractions_doc},
    {"english_words", english_words, METH_VARARGS, english_words_doc},
    {"script_shingles", script_shingles, METH_VARARGS, script_shingles_doc},
    {"segment_counts", segment_counts, METH_VARARGS, segment_counts_doc},
    {"line_statistics", line_statistics, METH_VARARGS, line_statistics_doc},
    {"normalize_texts", normalize_texts, METH_VARARGS, normalize_texts_doc},
    {"ascii_words", ascii_words, METH_VARARGS, ascii_words_doc},
    {"minhash_signatures", minhash_signatures, METH_VARARGS, minhash_signatures_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels", "Compiled kernels of the DMU's rules.", -1, methods};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
