/* The HTTP reason phrases (bindings/http_reason.c), for the server's status lines. */
#ifndef CORIO_HTTP_REASON_H
#define CORIO_HTTP_REASON_H

/* The reason phrase of a status code, or NULL for a code that has none registered. */
const char *corio__http_reason(int status);

#endif
