/* roost bench's compiled load generator: the fan-out ladder (scenarios fanout and scale) on epoll.

   Why C: on a 2-core machine the generator has one core, and receiving is what costs a generator (50 frames
   arrive per message sent in S1). The Python and Node generators use most of their core at 100,000-150,000
   frames/s against the bare servers; this one parses frames with a byte loop and no allocation per frame.

   It is driven by roost.bench.cgen (the wrapper that compiles it, writes its config, issues the tokens, and turns
   its raw step results into the same JSON lines as roost.bench.loadgen, with loadgen's own summarize()): the
   measurement rule is loadgen's, only the I/O is here. Config (argv[1]), one item per line:
     shape roost|bare      size N      duration S      warmup S      drain S      rates R1 R2 ...
     client HOST PORT PATH ROOM TOKEN|-     (one line per connection, grouped by room, rooms in order)
   Output on stdout: JSON lines ready / error / step-start / step-end / cstep (raw results; latencies in the
   file it names, int64 microseconds: lat then acks) / done. After each cstep it reads a line on stdin:
   "go" (next rate) or "stop". Client frames are masked with the all-zero key (RFC 6455 allows any key). */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int64_t *v;
    size_t n, cap;
} vec;

static void vpush(vec *a, int64_t x) {
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 4096;
        a->v = realloc(a->v, a->cap * sizeof(int64_t));
        if (!a->v) { perror("realloc"); exit(2); }
    }
    a->v[a->n++] = x;
}

typedef struct {
    int64_t sent, received;
    vec lat, ack;
    int active;
} step_t;

typedef struct {
    int fd;
    char host[64], path[160], room[96], token[512];
    int port;
    int upgraded, first;
    const char *expect; /* setup: the substring awaited, NULL when none */
    char *in;
    size_t inlen, incap;
    char *out;
    size_t outlen, outcap;
    int closed;
} conn_t;

static conn_t *conns;
static int nconns, members = 1, size = 200, shape_roost = 1, epfd;
static double duration = 10, warmup = 2, drain_s = 10;
static int rates[64], nrates;
static step_t steps[66]; /* index step+1: -1 warm-up, 0 probe, 1..n the rates */
static int64_t *pending;  /* send time of each ref still waiting for its ack, 0 when none */
static size_t npending_cap, pending_count;
static int64_t counter;
static int dropped, closing, setup_left;
static int cur_step = -1; /* where acks are counted: the step the sends were made in */

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static double cpu_s(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_utime.tv_sec + u.ru_utime.tv_usec / 1e6 + u.ru_stime.tv_sec + u.ru_stime.tv_usec / 1e6;
}

static void emit(const char *line) {
    fputs(line, stdout);
    fputc('\n', stdout);
    fflush(stdout);
}

static void fail(const char *why) {
    char b[512];
    snprintf(b, sizeof b, "{\"event\": \"error\", \"reason\": \"%s\"}", why);
    emit(b);
    emit("{\"event\": \"done\"}");
    exit(1);
}

static void want_out(conn_t *c, int on) {
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void flush_out(conn_t *c) {
    while (c->outlen) {
        ssize_t w = write(c->fd, c->out, c->outlen);
        if (w < 0) {
            if (errno == EAGAIN) { want_out(c, 1); return; }
            c->outlen = 0;
            return;
        }
        memmove(c->out, c->out + w, c->outlen - w);
        c->outlen -= w;
    }
    want_out(c, 0);
}

static void put_raw(conn_t *c, const char *data, size_t n) {
    if (c->closed) return;
    if (c->outlen == 0) {
        ssize_t w = write(c->fd, data, n);
        if (w == (ssize_t)n) return;
        if (w < 0) { if (errno != EAGAIN) return; w = 0; }
        data += w;
        n -= w;
    }
    if (c->outlen + n > c->outcap) {
        c->outcap = (c->outlen + n) * 2;
        c->out = realloc(c->out, c->outcap);
    }
    memcpy(c->out + c->outlen, data, n);
    c->outlen += n;
    want_out(c, 1);
}

static void put_frame(conn_t *c, int opcode, const char *payload, size_t n) {
    char h[14];
    size_t hl;
    h[0] = (char)(0x80 | opcode);
    if (n < 126) { h[1] = (char)(0x80 | n); hl = 2; }
    else if (n < 65536) { h[1] = (char)(0x80 | 126); h[2] = (char)(n >> 8); h[3] = (char)n; hl = 4; }
    else { h[1] = (char)(0x80 | 127); for (int i = 0; i < 8; i++) h[2 + i] = (char)(n >> (56 - 8 * i)); hl = 10; }
    memset(h + hl, 0, 4); /* the mask key: zero, so the payload goes as it is */
    hl += 4;
    char stackbuf[2048];
    char *b = n + hl <= sizeof stackbuf ? stackbuf : malloc(n + hl);
    memcpy(b, h, hl);
    memcpy(b + hl, payload, n);
    put_raw(c, b, n + hl);
    if (b != stackbuf) free(b);
}

static void put_text(conn_t *c, const char *s) { put_frame(c, 1, s, strlen(s)); }

/* ---- what arrives ------------------------------------------------------------------------------------ */

static void count_marks(const char *p, size_t n, int64_t now) {
    const char *end = p + n;
    const char *q = p;
    while ((q = memmem(q, end - q, "~T", 2)) != NULL) {
        q += 2;
        int64_t t = 0;
        while (q < end && *q >= '0' && *q <= '9') t = t * 10 + (*q++ - '0');
        if (q >= end || *q != ':') continue;
        q++;
        int neg = 0;
        if (q < end && *q == '-') { neg = 1; q++; }
        int s = 0;
        while (q < end && *q >= '0' && *q <= '9') s = s * 10 + (*q++ - '0');
        if (neg) s = -s;
        if (s >= -1 && s <= 64 && steps[s + 1].active) {
            steps[s + 1].received++;
            vpush(&steps[s + 1].lat, (now - t) / 1000);
        }
    }
}

static void count_acks(const char *p, size_t n, int64_t now) {
    static const char pat[] = "{\"type\":\"ack\",\"ref\":\"";
    const char *end = p + n;
    const char *q = p;
    while ((q = memmem(q, end - q, pat, sizeof pat - 1)) != NULL) {
        q += sizeof pat - 1;
        int64_t ref = 0;
        int digits = 0;
        while (q < end && *q >= '0' && *q <= '9') { ref = ref * 10 + (*q++ - '0'); digits++; }
        if (!digits || q >= end || *q != '"' || (size_t)ref >= npending_cap || !pending[ref]) continue;
        if (cur_step >= -1 && steps[cur_step + 1].active) vpush(&steps[cur_step + 1].ack, (now - pending[ref]) / 1000);
        pending[ref] = 0;
        pending_count--;
    }
}

static void on_text(conn_t *c, const char *p, size_t n) {
    if (c->expect) {
        if (memmem(p, n, "\"type\":\"error\"", 14) && !memmem(p, n, "4409", 4)) {
            char why[300];
            snprintf(why, sizeof why, "%s: an error frame during setup", c->room);
            fail(why);
        }
        if (memmem(p, n, c->expect, strlen(c->expect))) {
            c->expect = NULL;
            setup_left--;
        }
        return;
    }
    int64_t now = now_ns();
    count_marks(p, n, now);
    if (shape_roost && pending_count) count_acks(p, n, now);
}

static void on_readable(conn_t *c) {
    for (;;) {
        if (c->incap - c->inlen < 65536) {
            c->incap = c->incap ? c->incap * 2 : 131072;
            c->in = realloc(c->in, c->incap);
        }
        ssize_t r = read(c->fd, c->in + c->inlen, c->incap - c->inlen);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
            if (!c->closed && !closing) dropped++;
            c->closed = 1;
            epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
            close(c->fd);
            return;
        }
        if (r < 0) break;
        c->inlen += r;
        if ((size_t)r < c->incap - c->inlen + r) break; /* the socket is drained */
    }
    size_t at = 0;
    if (!c->upgraded) {
        char *e = memmem(c->in, c->inlen, "\r\n\r\n", 4);
        if (!e) return;
        if (c->inlen < 12 || memcmp(c->in + 9, "101", 3) != 0) fail("the WebSocket handshake was refused");
        c->upgraded = 1;
        setup_left--;
        at = (e - c->in) + 4;
    }
    while (c->inlen - at >= 2) {
        unsigned char *h = (unsigned char *)c->in + at;
        uint64_t len = h[1] & 0x7f;
        size_t hl = 2;
        if (len == 126) { if (c->inlen - at < 4) break; len = ((uint64_t)h[2] << 8) | h[3]; hl = 4; }
        else if (len == 127) {
            if (c->inlen - at < 10) break;
            len = 0;
            for (int i = 0; i < 8; i++) len = (len << 8) | h[2 + i];
            hl = 10;
        }
        if (h[1] & 0x80) hl += 4; /* a server never masks; tolerate it */
        if (c->inlen - at < hl + len) break;
        int op = h[0] & 0x0f;
        const char *payload = c->in + at + hl;
        if (op == 1 || op == 0) on_text(c, payload, len);
        else if (op == 9) put_frame(c, 10, payload, len);
        else if (op == 8) {
            if (!closing && !c->closed) dropped++;
            c->closed = 1;
        }
        at += hl + len;
    }
    if (at) {
        memmove(c->in, c->in + at, c->inlen - at);
        c->inlen -= at;
    }
}

static void poll_once(int timeout_ms) {
    struct epoll_event ev[256];
    int n = epoll_wait(epfd, ev, 256, timeout_ms);
    for (int i = 0; i < n; i++) {
        conn_t *c = ev[i].data.ptr;
        if (c->closed) continue;
        if (ev[i].events & EPOLLOUT) flush_out(c);
        if (ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
    }
}

/* ---- setup ------------------------------------------------------------------------------------------- */

static void wait_setup(double limit_s, const char *what) {
    int64_t deadline = now_ns() + (int64_t)(limit_s * 1e9);
    while (setup_left > 0) {
        if (now_ns() > deadline) {
            char why[200];
            snprintf(why, sizeof why, "setup: %d connections still waiting for %s", setup_left, what);
            fail(why);
        }
        poll_once(10);
    }
}

static void open_one(conn_t *c) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(c->port)};
    inet_pton(AF_INET, c->host, &a.sin_addr);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&a, sizeof a) < 0) fail("connect failed");
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int nonblocking = 1; /* connected (blocking: loopback answers at once), then non-blocking for epoll */
    if (ioctl(c->fd, FIONBIO, &nonblocking) < 0) fail("FIONBIO");
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: cm9vc3QtYmVuY2gtY2dlbg==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                     c->path, c->host, c->port);
    setup_left++;
    put_raw(c, req, n);
}

static void ask(conn_t *c, const char *frame, const char *expect) {
    c->expect = expect;
    setup_left++;
    put_text(c, frame);
}

static void open_rooms(void) {
    for (int i = 0; i < nconns; i += 200) {
        for (int j = i; j < nconns && j < i + 200; j++) open_one(&conns[j]);
        wait_setup(60, "the handshake");
    }
    char f[700];
    if (shape_roost) {
        for (int i = 0; i < nconns; i++) {
            snprintf(f, sizeof f, "{\"type\":\"auth\",\"token\":\"%s\"}", conns[i].token);
            ask(&conns[i], f, "\"type\":\"welcome\"");
        }
        wait_setup(60, "welcome");
        for (int i = 0; i < nconns; i++)
            if (conns[i].first) {
                snprintf(f, sizeof f, "{\"type\":\"create\",\"room\":\"%s\",\"id\":\"c\"}", conns[i].room);
                ask(&conns[i], f, "\"ref\":\"c\"");
            }
        wait_setup(60, "create");
        for (int i = 0; i < nconns; i++)
            if (conns[i].first) {
                snprintf(f, sizeof f, "{\"type\":\"subscribe\",\"room\":\"%s\",\"id\":\"s\"}", conns[i].room);
                ask(&conns[i], f, "\"type\":\"live\"");
            }
        wait_setup(60, "live");
        for (int i = 0; i < nconns; i++)
            if (!conns[i].first) {
                snprintf(f, sizeof f, "{\"type\":\"join\",\"room\":\"%s\",\"id\":\"j\"}", conns[i].room);
                ask(&conns[i], f, "\"ref\":\"j\"");
            }
        wait_setup(60, "join");
        for (int i = 0; i < nconns; i++)
            if (!conns[i].first) {
                snprintf(f, sizeof f, "{\"type\":\"subscribe\",\"room\":\"%s\",\"id\":\"s\"}", conns[i].room);
                ask(&conns[i], f, "\"type\":\"live\"");
            }
        wait_setup(120, "live");
    }
}

/* ---- sending ----------------------------------------------------------------------------------------- */

static int turn;

static void send_one(conn_t *c, int step) {
    int64_t now = now_ns();
    int64_t n = counter++;
    char body[4096], frame[4400];
    int hl = snprintf(body, sizeof body, "~T%lld:%d:", (long long)now, step);
    int bl = size > hl ? size : hl;
    if (bl >= (int)sizeof body) bl = sizeof body - 1;
    memset(body + hl, 'x', bl - hl);
    body[bl] = 0;
    int fl;
    if (shape_roost) {
        if ((size_t)n >= npending_cap) {
            size_t cap = npending_cap ? npending_cap * 2 : 1 << 20;
            pending = realloc(pending, cap * sizeof(int64_t));
            memset(pending + npending_cap, 0, (cap - npending_cap) * sizeof(int64_t));
            npending_cap = cap;
        }
        pending[n] = now;
        pending_count++;
        fl = snprintf(frame, sizeof frame, "{\"type\":\"send\",\"room\":\"%s\",\"cmid\":\"b%lld\",\"body\":\"%s\",\"id\":\"%lld\"}",
                      c->room, (long long)n, body, (long long)n);
    } else {
        fl = snprintf(frame, sizeof frame, "{\"room\":\"%s\",\"seq\":%lld,\"t\":%lld,\"body\":\"%s\"}", c->room,
                      (long long)n, (long long)now, body);
    }
    put_frame(c, 1, frame, fl);
    steps[step + 1].sent++;
}

static void run_rate(int step, double rate, double seconds) {
    int64_t start = now_ns();
    for (;;) {
        double elapsed = (now_ns() - start) / 1e9;
        if (elapsed >= seconds) break;
        int64_t due = (int64_t)(elapsed * rate) - steps[step + 1].sent;
        for (int64_t i = 0; i < due; i++) {
            send_one(&conns[turn], step);
            turn = (turn + 1) % nconns;
        }
        poll_once(1);
    }
}

static void drain(int step, double limit_s) {
    int64_t deadline = now_ns() + (int64_t)(limit_s * 1e9);
    step_t *s = &steps[step + 1];
    while (s->received < s->sent * members && now_ns() < deadline) poll_once(5);
}

static void acks_settled(double limit_s) {
    int64_t deadline = now_ns() + (int64_t)(limit_s * 1e9);
    while (shape_roost && pending_count && now_ns() < deadline) poll_once(5);
}

static void reset_step(int step) {
    step_t *s = &steps[step + 1];
    s->sent = s->received = 0;
    s->lat.n = s->ack.n = 0;
    s->active = 1;
}

static void forget_pending(void) {
    if (pending) memset(pending, 0, npending_cap * sizeof(int64_t));
    pending_count = 0;
}

/* ---- config ------------------------------------------------------------------------------------------ */

static void read_config(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) fail("cannot read the config");
    char line[1024];
    int cap = 0;
    char last_room[96] = "";
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (!strncmp(line, "shape ", 6)) shape_roost = !strcmp(line + 6, "roost");
        else if (!strncmp(line, "size ", 5)) size = atoi(line + 5);
        else if (!strncmp(line, "members ", 8)) members = atoi(line + 8);
        else if (!strncmp(line, "duration ", 9)) duration = atof(line + 9);
        else if (!strncmp(line, "warmup ", 7)) warmup = atof(line + 7);
        else if (!strncmp(line, "drain ", 6)) drain_s = atof(line + 6);
        else if (!strncmp(line, "rates ", 6)) {
            char *p = line + 6;
            while (*p && nrates < 64) {
                rates[nrates++] = (int)strtol(p, &p, 10);
                while (*p == ' ') p++;
            }
        } else if (!strncmp(line, "client ", 7)) {
            if (nconns == cap) {
                cap = cap ? cap * 2 : 1024;
                conns = realloc(conns, cap * sizeof(conn_t));
            }
            conn_t *c = &conns[nconns++];
            memset(c, 0, sizeof *c);
            if (sscanf(line + 7, "%63s %d %159s %95s %511s", c->host, &c->port, c->path, c->room, c->token) != 5)
                fail("a bad client line");
            c->first = strcmp(c->room, last_room) != 0;
            strcpy(last_room, c->room);
        }
    }
    fclose(f);
}

int main(int argc, char **argv) {
    if (argc < 2) fail("usage: gen CONFIG");
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) { rl.rlim_cur = rl.rlim_max; setrlimit(RLIMIT_NOFILE, &rl); }
    read_config(argv[1]);
    if (!nconns || !nrates) fail("no clients or no rates");
    epfd = epoll_create1(0);
    open_rooms();
    char b[1024];
    snprintf(b, sizeof b, "{\"event\": \"ready\", \"connections\": %d, \"dropped\": %d}", nconns, dropped);
    emit(b);
    /* Probe: one message into every room; every member must receive it. */
    reset_step(0);
    cur_step = 0;
    for (int i = 0; i < nconns; i++)
        if (conns[i].first) send_one(&conns[i], 0);
    drain(0, 15.0);
    if (steps[1].received < steps[1].sent * members) {
        snprintf(b, sizeof b, "probe: %lld/%lld frames", (long long)steps[1].received,
                 (long long)(steps[1].sent * members));
        fail(b);
    }
    steps[1].active = 0;
    /* Warm-up at the first rate, not measured. */
    reset_step(-1);
    cur_step = -1;
    run_rate(-1, rates[0], warmup);
    drain(-1, 10.0);
    steps[0].active = 0;
    forget_pending();
    for (int k = 0; k < nrates; k++) {
        int step = k + 1;
        reset_step(step);
        cur_step = step;
        snprintf(b, sizeof b, "{\"event\": \"step-start\", \"rate\": %d}", rates[k]);
        emit(b);
        double cpu0 = cpu_s();
        int64_t wall0 = now_ns();
        int dropped0 = dropped;
        run_rate(step, rates[k], duration);
        double wall = (now_ns() - wall0) / 1e9;
        int64_t in_window = steps[step + 1].received;
        double gen_cpu = (cpu_s() - cpu0) / wall * 100;
        snprintf(b, sizeof b, "{\"event\": \"step-end\", \"rate\": %d}", rates[k]);
        emit(b);
        drain(step, drain_s);
        acks_settled(5.0);
        step_t *s = &steps[step + 1];
        char path[256];
        snprintf(path, sizeof path, "%s.step%d", argv[1], step);
        FILE *out = fopen(path, "wb");
        if (!out) fail("cannot write a step file");
        fwrite(s->lat.v, sizeof(int64_t), s->lat.n, out);
        fwrite(s->ack.v, sizeof(int64_t), s->ack.n, out);
        fclose(out);
        snprintf(b, sizeof b,
                 "{\"event\": \"cstep\", \"rate\": %d, \"index\": %d, \"sent\": %lld, \"received\": %lld, "
                 "\"in_window\": %lld, \"lat\": %zu, \"acks\": %zu, \"wall\": %.6f, \"dropped\": %d, \"gen_cpu\": %.3f, "
                 "\"file\": \"%s\"}",
                 rates[k], step, (long long)s->sent, (long long)s->received, (long long)in_window, s->lat.n, s->ack.n,
                 wall, dropped - dropped0, gen_cpu, path);
        emit(b);
        s->active = 0;
        forget_pending();
        char answer[16] = "";
        if (!fgets(answer, sizeof answer, stdin) || strncmp(answer, "go", 2) != 0) break;
    }
    closing = 1;
    emit("{\"event\": \"done\"}");
    return 0;
}
