/*
 * A strict little JSON parser for tests/test-inspect.c: the dump is parsed and checked as
 * data, not grepped. RFC 8259 grammar (objects, arrays, strings with escapes, numbers,
 * true/false/null); anything else is an error with its offset. Test code: simple over fast.
 */
#ifndef TEST_INSPECT_JSON_H
#define TEST_INSPECT_JSON_H

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ } JType;

typedef struct Json {
    JType type;
    bool b;
    double num;
    bool is_int;
    long long i;
    char *s;                 /* J_STR */
    struct Json **items;     /* J_ARR, J_OBJ values */
    char **keys;             /* J_OBJ */
    size_t n;
} Json;

typedef struct JParser {
    const char *p, *start;
    const char *err;
    size_t err_at;
} JParser;

static Json *jvalue(JParser *ps);

static void jskip(JParser *ps)
{
    while (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r') {
        ps->p++;
    }
}

static Json *jfail(JParser *ps, const char *why)
{
    if (!ps->err) {
        ps->err = why;
        ps->err_at = (size_t)(ps->p - ps->start);
    }
    return NULL;
}

static void jfree(Json *j)
{
    if (!j) {
        return;
    }
    for (size_t i = 0; i < j->n; i++) {
        jfree(j->items[i]);
        if (j->keys) {
            free(j->keys[i]);
        }
    }
    free(j->items);
    free(j->keys);
    free(j->s);
    free(j);
}

static char *jstring(JParser *ps)
{
    if (*ps->p != '"') {
        jfail(ps, "expected a string");
        return NULL;
    }
    ps->p++;
    size_t cap = 16, len = 0;
    char *out = malloc(cap);
    for (;;) {
        unsigned char c = (unsigned char)*ps->p;
        if (c == '\0' || c < 0x20) {
            free(out);
            jfail(ps, "unterminated string or raw control character");
            return NULL;
        }
        if (len + 8 > cap) {
            cap *= 2;
            out = realloc(out, cap);
        }
        ps->p++;
        if (c == '"') {
            break;
        }
        if (c != '\\') {
            out[len++] = (char)c;
            continue;
        }
        char e = *ps->p++;
        switch (e) {
        case '"': case '\\': case '/': out[len++] = e; break;
        case 'b': out[len++] = '\b'; break;
        case 'f': out[len++] = '\f'; break;
        case 'n': out[len++] = '\n'; break;
        case 'r': out[len++] = '\r'; break;
        case 't': out[len++] = '\t'; break;
        case 'u': {
            unsigned cp = 0;
            for (int k = 0; k < 4; k++) {
                char h = *ps->p++;
                if (!isxdigit((unsigned char)h)) {
                    free(out);
                    jfail(ps, "bad \\u escape");
                    return NULL;
                }
                cp = cp * 16 + (unsigned)(isdigit((unsigned char)h) ? h - '0'
                                                                   : (tolower(h) - 'a' + 10));
            }
            if (cp < 0x80) {
                out[len++] = (char)cp;
            } else if (cp < 0x800) {
                out[len++] = (char)(0xc0 | cp >> 6);
                out[len++] = (char)(0x80 | (cp & 0x3f));
            } else {
                out[len++] = (char)(0xe0 | cp >> 12);
                out[len++] = (char)(0x80 | ((cp >> 6) & 0x3f));
                out[len++] = (char)(0x80 | (cp & 0x3f));
            }
            break;
        }
        default:
            free(out);
            jfail(ps, "bad escape");
            return NULL;
        }
    }
    out[len] = '\0';
    return out;
}

static Json *jnew(JType t)
{
    Json *j = calloc(1, sizeof(*j));
    j->type = t;
    return j;
}

static void jpush(Json *j, char *key, Json *v)
{
    j->items = realloc(j->items, (j->n + 1) * sizeof(*j->items));
    if (j->type == J_OBJ) {
        j->keys = realloc(j->keys, (j->n + 1) * sizeof(*j->keys));
        j->keys[j->n] = key;
    }
    j->items[j->n++] = v;
}

static Json *jvalue(JParser *ps)
{
    jskip(ps);
    const char *p = ps->p;
    if (*p == '{' || *p == '[') {
        bool obj = *p == '{';
        Json *j = jnew(obj ? J_OBJ : J_ARR);
        ps->p++;
        jskip(ps);
        if (*ps->p == (obj ? '}' : ']')) {
            ps->p++;
            return j;
        }
        for (;;) {
            char *key = NULL;
            if (obj) {
                jskip(ps);
                key = jstring(ps);
                jskip(ps);
                if (!key || *ps->p != ':') {
                    free(key);
                    jfree(j);
                    return jfail(ps, "expected \"key\":");
                }
                ps->p++;
            }
            Json *v = jvalue(ps);
            if (!v) {
                free(key);
                jfree(j);
                return NULL;
            }
            jpush(j, key, v);
            jskip(ps);
            if (*ps->p == ',') {
                ps->p++;
                continue;
            }
            if (*ps->p == (obj ? '}' : ']')) {
                ps->p++;
                return j;
            }
            jfree(j);
            return jfail(ps, "expected , or end of container");
        }
    }
    if (*p == '"') {
        char *s = jstring(ps);
        if (!s) {
            return NULL;
        }
        Json *j = jnew(J_STR);
        j->s = s;
        return j;
    }
    if (strncmp(p, "true", 4) == 0 || strncmp(p, "false", 5) == 0) {
        Json *j = jnew(J_BOOL);
        j->b = *p == 't';
        ps->p += j->b ? 4 : 5;
        return j;
    }
    if (strncmp(p, "null", 4) == 0) {
        ps->p += 4;
        return jnew(J_NULL);
    }
    if (*p == '-' || isdigit((unsigned char)*p)) {
        const char *q = p;
        if (*q == '-') {
            q++;
        }
        if (!isdigit((unsigned char)*q) || (*q == '0' && isdigit((unsigned char)q[1]))) {
            return jfail(ps, "bad number");
        }
        while (isdigit((unsigned char)*q)) {
            q++;
        }
        bool is_int = true;
        if (*q == '.' || *q == 'e' || *q == 'E') {
            is_int = false;
        }
        char *end;
        Json *j = jnew(J_NUM);
        j->num = strtod(p, &end);
        j->is_int = is_int;
        if (is_int) {
            j->i = strtoll(p, NULL, 10);
        }
        ps->p = end;
        return j;
    }
    return jfail(ps, "unexpected character");
}

/* Parses exactly one document followed by exactly one newline; NULL and *err otherwise. */
static Json *jparse_document(const char *text, char *err, size_t errlen)
{
    JParser ps = { text, text, NULL, 0 };
    Json *j = jvalue(&ps);
    if (j && strcmp(ps.p, "\n") != 0) {
        jfree(j);
        j = NULL;
        ps.err = "not exactly one document and a newline";
        ps.err_at = (size_t)(ps.p - text);
    }
    if (!j) {
        snprintf(err, errlen, "%s at offset %zu", ps.err ? ps.err : "?", ps.err_at);
    }
    return j;
}

static Json *jget(const Json *o, const char *key)
{
    if (!o || o->type != J_OBJ) {
        return NULL;
    }
    for (size_t i = 0; i < o->n; i++) {
        if (strcmp(o->keys[i], key) == 0) {
            return o->items[i];
        }
    }
    return NULL;
}

#endif /* TEST_INSPECT_JSON_H */
