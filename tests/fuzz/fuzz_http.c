/* Fuzz target: examples/http_server's request parser.
 *
 * The first byte picks the parser: even, a request head (parse_head);
 * odd, a chunk-size line (parse_chunk_size); the rest is its input.
 * Checked, besides no crash and no read outside the input (ASan):
 *  - an accepted head names a method of token characters and a target of
 *    visible ASCII, both inside the input; its version is 1.x; it has
 *    never both a Content-Length and chunked; it holds no bare CR or LF
 *    (a smuggling vector) and ends with its empty line;
 *  - any answer is 0 or one of the statuses the server sends;
 *  - an accepted chunk-size line is hex digits (fewer than 16) then an
 *    extension, ending in CRLF, and its size is what the digits say. */
#define HTTP_SERVER_NO_MAIN
#include "../../examples/http_server.c"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static void require(bool cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "fuzz_http: %s\n", what);
        abort();
    }
}

static bool inside(span s, const char *buf, size_t len)
{
    return s.p >= buf && s.p + s.n <= buf + len && s.n > 0;
}

static void check_head(const char *buf, size_t len)
{
    http_request r;
    int status = parse_head(buf, len, &r);
    require(status == 0 || status == 400 || status == 431 || status == 501 ||
                status == 505, "an answer the server does not send");
    if (status)
        return;
    require(inside(r.method, buf, len) && inside(r.target, buf, len),
            "method or target outside the input");
    for (size_t i = 0; i < r.method.n; i++)
        require(is_tchar((unsigned char)r.method.p[i]), "method not a token");
    for (size_t i = 0; i < r.target.n; i++)
        require(r.target.p[i] > 32 && r.target.p[i] < 127, "target not visible");
    require(r.minor >= 0 && r.minor <= 9, "version");
    require(!(r.chunked && r.content_length >= 0), "length and chunked");
    require(r.content_length >= -1, "negative length");
    for (size_t i = 0; i < len; i++) {
        require(buf[i] != '\n' || (i > 0 && buf[i - 1] == '\r'), "bare LF");
        require(buf[i] != '\r' || (i + 1 < len && buf[i + 1] == '\n'), "bare CR");
    }
    require(len >= 4 && memcmp(buf + len - 4, "\r\n\r\n", 4) == 0,
            "no empty line at the end");
}

static void check_chunk_size(const char *line, size_t len)
{
    uint64_t size = 1234;
    int status = parse_chunk_size(line, len, &size);
    require(status == 0 || status == 400, "chunk: an unknown answer");
    if (status) {
        require(size == 1234, "chunk: size written on failure");
        return;
    }
    require(len >= 3 && line[len - 2] == '\r' && line[len - 1] == '\n',
            "chunk: no CRLF");
    uint64_t model = 0;
    size_t i = 0;
    for (; i < len && isxdigit((unsigned char)line[i]); i++)
        model = model * 16 + (uint64_t)(isdigit((unsigned char)line[i])
                                            ? line[i] - '0'
                                            : tolower((unsigned char)line[i]) - 'a' + 10);
    require(i > 0 && i < 16, "chunk: digits");
    require(model == size, "chunk: size differs from its digits");
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (size == 0)
        return 0;
    /* A copy of exactly the input: ASan sees any read past it. */
    char *buf = malloc(size - 1 ? size - 1 : 1);
    memcpy(buf, data + 1, size - 1);
    if (data[0] % 2 == 0)
        check_head(buf, size - 1);
    else
        check_chunk_size(buf, size - 1);
    free(buf);
    return 0;
}
