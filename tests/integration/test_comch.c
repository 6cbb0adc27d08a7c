/*
 * The comch channel end to end, against the DOCA emulation (built with
 * hmaf_static_doca), each side in its own process:
 *   - a forked host agent on engine "doca" dials the dpu side (this
 *     process, listening as the comch server), which reads and writes the
 *     exposed memory, then sees the host die;
 *   - the comch link drops while the host lives on with its memory
 *     exported: the dpu side's calls fail at once, so the channel told it,
 *     not a DMA; the host's agent sees the drop too when it looks;
 *   - a DMA fails while the link is up: the dpu side's call fails, the
 *     host's agent keeps the session until the dpu side closes it;
 *   - the host destroys its agent: the dpu side learns over the channel at
 *     once, and the host's destroy waits until the dpu side has released
 *     its imports and gone;
 *   - the dpu side is killed: the host's agent (this process now) closes
 *     the session within 1 s, polled or threaded, and a polled agent with
 *     nothing to do still lasts its whole timeout (it asks the channel,
 *     which has no fd, between short waits);
 *   - what a card does that the emulation enforces: the host dials before
 *     the dpu side listens (refused, so only retrying connects) and times
 *     out when nobody ever listens; an instance's default message size is
 *     too small for the WELCOME until set; the HELLO arrives in the progress
 *     call that turns the host's client RUNNING; a dpu side's close reaches
 *     the host only by disconnect; names are as long as the device says.
 * Where the host is the child, the dpu side is its parent, as the
 * emulation's DMA needs where Yama is strict.
 */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <doca_emu.h>
#include <hmaf/hmaf.h>

#include "channel/channel.h"
#include "check.h"
#include "util/clock.h"

#define HOST_PCI  "b1:00.0" /* the emulation's defaults */
#define DPU_PCI   "03:00.0"
#define PROMPT_NS 1000000000ull /* "promptly": within 1 s */

static uint8_t memory[8192];
static char host_address[96], dpu_address[96];

/* fork(), but the child dies with us: after a failed check it would wait
 * for its peer forever. */
static pid_t fork_child(void)
{
    pid_t parent = getpid();
    pid_t pid = fork();

    CHECK(pid >= 0);
    if (pid == 0 &&
        (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)) {
        _exit(1);
    }
    return pid;
}

/* Wait up to PROMPT_NS for the agent to close a session, driving it when
 * it has no thread; 1 when it did in time with none left live. */
static int wait_closed(hmaf_agent_t *agent, int threaded)
{
    uint64_t start = hmaf__now_ns();
    hmaf_agent_stats_t st = HMAF_AGENT_STATS_INIT;

    do {
        if (threaded) {
            nanosleep(&(struct timespec){0, 1000000}, NULL);
        } else {
            /* Ends early only on a channel event. */
            (void)hmaf_agent_poll(agent, 1000);
        }
        CHECK_OK(hmaf_agent_stats(agent, &st));
    } while (st.sessions_closed == 0 && hmaf__now_ns() - start < PROMPT_NS);
    return st.sessions_closed == 1 && st.sessions_live == 0 &&
           hmaf__now_ns() - start < PROMPT_NS;
}

/* Commands a forked host answers on its socket. */
#define CMD_STATS 's' /* -> sessions live, sessions closed (a byte each) */
#define CMD_WAIT  'w' /* -> 1 if a session closed within 1 s, else 0 */
#define CMD_DESTROY 'd' /* destroy the agent -> how long it took, in 20 ms
                           units (capped), and a byte more */
#define HOST_REVOKE_WAIT_MS 3000

static void answer(hmaf_agent_t *agent, int threaded, int cmd_fd, char cmd)
{
    hmaf_agent_stats_t st = HMAF_AGENT_STATS_INIT;
    uint8_t reply[2];

    CHECK_OK(hmaf_agent_stats(agent, &st));
    reply[0] = (uint8_t)st.sessions_live;
    reply[1] = (uint8_t)st.sessions_closed;
    if (cmd == CMD_WAIT) {
        reply[0] = (uint8_t)wait_closed(agent, threaded);
    }
    if (cmd == CMD_DESTROY) {
        uint64_t start = hmaf__now_ns(), units;
        hmaf_agent_destroy(agent);
        units = (hmaf__now_ns() - start) / 20000000u;
        reply[0] = (uint8_t)(units > 254 ? 254 : units);
        CHECK(write(cmd_fd, reply, 2) > 0);
        _exit(0);
    }
    CHECK(write(cmd_fd, reply, cmd == CMD_WAIT ? 1 : 2) > 0);
}

/* The host: expose, dial, then answer commands until the socket closes
 * (cmd_fd -1: until killed). Unthreaded, the agent runs only inside
 * CMD_WAIT, so until then it notices nothing and unexports nothing. */
static _Noreturn void run_host(int threaded, int cmd_fd)
{
    hmaf_agent_params_t ap;
    hmaf_agent_t *agent;
    char cmd;
    int ret;

    for (size_t i = 0; i < sizeof(memory); i++) {
        memory[i] = (uint8_t)(i * 7 + 1);
    }
    hmaf_agent_params_init(&ap);
    ap.engine = "doca";
    ap.threaded = threaded;
    ap.revoke_wait_ms = HOST_REVOKE_WAIT_MS;
    if (hmaf_agent_create(&ap, &agent) != 0 ||
        hmaf_agent_expose(agent, memory, sizeof(memory),
                          HMAF_ACCESS_READ_WRITE) != 0) {
        _exit(2);
    }
    ret = hmaf_agent_dial(agent, host_address, 5000);
    if (ret != 0) {
        fprintf(stderr, "host: dial: %s\n", hmaf_strerror(ret));
        _exit(3);
    }
    while (cmd_fd >= 0 && read(cmd_fd, &cmd, 1) == 1) {
        answer(agent, threaded, cmd_fd, cmd);
    }
    for (;;) {
        pause();
    }
}

/* Fork a host; *cmd_out is the socket to command it through. */
static pid_t fork_host(int threaded, int *cmd_out)
{
    int sv[2];
    pid_t host;

    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    host = fork_child();
    if (host == 0) {
        close(sv[0]);
        run_host(threaded, sv[1]);
    }
    close(sv[1]);
    *cmd_out = sv[0];
    return host;
}

static uint8_t host_command(int cmd_fd, char cmd, uint8_t *second)
{
    uint8_t reply[2] = {0, 0};
    size_t want = cmd == CMD_WAIT ? 1 : 2;

    CHECK(write(cmd_fd, &cmd, 1) == 1);
    CHECK(recv(cmd_fd, reply, want, MSG_WAITALL) == (ssize_t)want);
    if (second != NULL) {
        *second = reply[1];
    }
    return reply[0];
}

static void end_host(pid_t host, int cmd_fd)
{
    int status;

    close(cmd_fd);
    kill(host, SIGKILL);
    CHECK(waitpid(host, &status, 0) == host);
}

static int open_dpu(hmaf_session_t **s_out)
{
    hmaf_session_params_t p;

    hmaf_session_params_init(&p);
    p.engine = "doca";
    p.address = dpu_address;
    p.listen = 1;
    p.connect_timeout_ms = 5000;
    return hmaf_session_create(&p, s_out);
}

/* The host dials, the dpu side listens; the other way is refused. */
static void check_directions(void)
{
    hmaf_session_params_t p;
    hmaf_agent_params_t ap;
    hmaf_session_t *s;
    hmaf_agent_t *a;

    hmaf_session_params_init(&p);
    p.engine = "doca";
    p.address = host_address;
    CHECK_ERR(hmaf_session_create(&p, &s), HMAF_EINVAL); /* dpu dialing */
    p.listen = 1;
    p.connect_timeout_ms = 100;
    CHECK_ERR(hmaf_session_create(&p, &s), HMAF_EINVAL); /* no /REP */
    p.address = "comch:x@";
    CHECK_ERR(hmaf_session_create(&p, &s), HMAF_EADDRESS);
    hmaf_agent_params_init(&ap);
    ap.address = host_address;
    CHECK_ERR(hmaf_agent_create(&ap, &a), HMAF_EINVAL); /* host listening */
    ap.address = NULL;
    CHECK_OK(hmaf_agent_create(&ap, &a));
    CHECK_ERR(hmaf_agent_listen(a, host_address), HMAF_EINVAL);
    CHECK_ERR(hmaf_agent_dial(a, dpu_address, 100), HMAF_EINVAL);
    hmaf_agent_destroy(a);
}

static void check_rw(hmaf_session_t *s)
{
    uint64_t addr = (uint64_t)(uintptr_t)memory;
    uint8_t buf[sizeof(memory)], back[64];

    CHECK_OK(hmaf_session_read(s, buf, addr, sizeof(buf)));
    for (size_t i = 0; i < sizeof(buf); i++) {
        CHECK_EQ(buf[i], (uint8_t)(i * 7 + 1));
    }
    memset(back, 0xA5, sizeof(back));
    CHECK_OK(hmaf_session_write(s, addr + 100, back, sizeof(back)));
    memset(back, 0, sizeof(back));
    CHECK_OK(hmaf_session_read(s, back, addr + 100, sizeof(back)));
    for (size_t i = 0; i < sizeof(back); i++) {
        CHECK_EQ(back[i], 0xA5);
    }
    CHECK_OK(hmaf_session_ping(s));
}

/* Kill the host: the dpu side's calls fail with ECONNRESET within 1 s. */
static void check_host_death(hmaf_session_t *s, pid_t host)
{
    uint64_t addr = (uint64_t)(uintptr_t)memory;
    uint64_t start;
    uint8_t v[16];
    int ret = 0;

    kill(host, SIGKILL);
    waitpid(host, NULL, 0);
    start = hmaf__now_ns();
    while (ret == 0 && hmaf__now_ns() - start < PROMPT_NS) {
        ret = hmaf_session_read(s, v, addr, sizeof(v));
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    CHECK_ERR(ret, HMAF_ECONNRESET);
    CHECK_ERR(hmaf_session_ping(s), HMAF_ECONNRESET);
}

static void check_end_to_end(void)
{
    hmaf_session_t *s;
    pid_t host;
    int ret, cmd_fd;

    host = fork_host(1, &cmd_fd);
    ret = open_dpu(&s);
    if (ret == HMAF_EPERM || ret == HMAF_EACCES) {
        end_host(host, cmd_fd);
        SKIP("no ptrace right over the host process (%s)", hmaf_strerror(ret));
    }
    CHECK_OK(ret);
    check_rw(s);
    check_host_death(s, host);
    close(cmd_fd);
    hmaf_session_destroy(s);
}

/* Set (or, with NULL, clear) an emulation knob for this process only;
 * its fault counters start again. */
static void set_fault(const char *knob, const char *value)
{
    if (value != NULL) {
        setenv(knob, value, 1);
    } else {
        unsetenv(knob);
    }
    doca_emu_reset();
}

/* The link drops right after the WELCOME reached us, and the host's agent
 * runs only when told, so its session, mailbox and exposure stay exported
 * and a DMA would work: ECONNRESET at once can only come from the channel.
 * The host's agent then sees the drop as soon as it runs. */
static void check_link_drop(void)
{
    uint64_t addr = (uint64_t)(uintptr_t)memory, start;
    hmaf_session_t *s;
    uint8_t v[16], closed;
    int cmd_fd;
    pid_t host = fork_host(0, &cmd_fd);

    /* Set after the fork: the host keeps its link. */
    set_fault("DOCA_EMU_FAULT_DISCONNECT_AFTER", "1");
    CHECK_OK(open_dpu(&s));
    start = hmaf__now_ns();
    CHECK_ERR(hmaf_session_read(s, v, addr, sizeof(v)), HMAF_ECONNRESET);
    CHECK(hmaf__now_ns() - start < PROMPT_NS);
    set_fault("DOCA_EMU_FAULT_DISCONNECT_AFTER", NULL);
    /* The host noticed nothing yet: all it exported still is. */
    CHECK_EQ(host_command(cmd_fd, CMD_STATS, &closed), 1);
    CHECK_EQ(closed, 0);
    CHECK_EQ(host_command(cmd_fd, CMD_WAIT, NULL), 1);
    hmaf_session_destroy(s);
    end_host(host, cmd_fd);
}

/* A DMA fails while the link is up: the dpu side's call fails, the
 * session is over for it, and it says so over the link that still works:
 * the host's agent, running all along, closes the session at once rather
 * than waiting for hmaf_session_destroy. */
static void check_dma_failure(void)
{
    uint64_t addr = (uint64_t)(uintptr_t)memory;
    hmaf_session_t *s;
    uint8_t v[16];
    int cmd_fd;
    pid_t host = fork_host(1, &cmd_fd);

    CHECK_OK(open_dpu(&s));
    CHECK_OK(hmaf_session_read(s, v, addr, sizeof(v)));
    set_fault("DOCA_EMU_FAULT_DMA_EVERY", "1");
    CHECK_ERR(hmaf_session_read(s, v, addr, sizeof(v)), HMAF_ECONNRESET);
    set_fault("DOCA_EMU_FAULT_DMA_EVERY", NULL);
    CHECK_EQ(host_command(cmd_fd, CMD_WAIT, NULL), 1);
    CHECK_ERR(hmaf_session_ping(s), HMAF_ECONNRESET);
    hmaf_session_destroy(s);
    end_host(host, cmd_fd);
}

/* The host destroys its agent under a live session: its goodbye ends the
 * dpu side's calls at once, and its destroy returns only after the dpu
 * side released its imports (hmaf_session_destroy), promptly then. */
static void check_agent_destroy(void)
{
    uint64_t addr = (uint64_t)(uintptr_t)memory, start;
    struct pollfd reply;
    hmaf_session_t *s;
    uint8_t v[16], units = 0;
    const char cmd = CMD_DESTROY;
    int cmd_fd;
    pid_t host = fork_host(1, &cmd_fd);

    CHECK_OK(open_dpu(&s));
    CHECK_OK(hmaf_session_read(s, v, addr, sizeof(v)));
    CHECK(write(cmd_fd, &cmd, 1) == 1);
    start = hmaf__now_ns();
    while (hmaf_session_read(s, v, addr, sizeof(v)) == 0) {
        CHECK(hmaf__now_ns() - start < PROMPT_NS);
    }
    CHECK_ERR(hmaf_session_ping(s), HMAF_ECONNRESET);
    reply = (struct pollfd){.fd = cmd_fd, .events = POLLIN};
    CHECK_EQ(poll(&reply, 1, 200), 0); /* the host waits for us */
    start = hmaf__now_ns();
    hmaf_session_destroy(s);
    CHECK(recv(cmd_fd, &units, 1, MSG_WAITALL) == 1);
    CHECK(hmaf__now_ns() - start < PROMPT_NS);
    CHECK(units >= 10 && units < HOST_REVOKE_WAIT_MS / 20);
    end_host(host, cmd_fd);
}

/* The dpu side, forked: listen, read through the host's agent, report
 * ('r' read, 'p' no ptrace right, 'f' failed), wait to be killed. */
static _Noreturn void run_dpu(int report_fd)
{
    hmaf_session_t *s;
    uint8_t v[16];
    char report = 'f';
    int ret = open_dpu(&s);

    if (ret == 0) {
        ret = hmaf_session_read(s, v, (uint64_t)(uintptr_t)memory, sizeof(v));
    }
    if (ret == 0) {
        report = 'r';
    } else if (ret == HMAF_EPERM || ret == HMAF_EACCES) {
        report = 'p';
    }
    if (write(report_fd, &report, 1) != 1) {
        _exit(1);
    }
    for (;;) {
        pause();
    }
}

/* The dpu's report, serving its requests meanwhile when unthreaded. */
static char dpu_report(hmaf_agent_t *agent, int threaded, int report_fd)
{
    struct pollfd p = {.fd = report_fd, .events = POLLIN};
    uint64_t start = hmaf__now_ns();
    char report = 'f';

    while (hmaf__now_ns() - start < 10 * PROMPT_NS) {
        if (!threaded) {
            (void)hmaf_agent_poll(agent, 1);
        }
        if (poll(&p, 1, threaded ? 10 : 0) == 1) {
            return read(report_fd, &report, 1) == 1 ? report : 'f';
        }
    }
    return report;
}

/* With a comch session and nothing to do, a poll lasts its whole timeout:
 * the channel has no fd, so the agent asks it between short waits, and
 * goes on waiting while it finds nothing. */
static void check_idle_poll(hmaf_agent_t *agent)
{
    uint64_t start = hmaf__now_ns();

    CHECK_EQ(hmaf_agent_poll(agent, 300), 0);
    CHECK(hmaf__now_ns() - start >= 250000000ull);
}

/* Kill the dpu side: the host's agent closes its session within 1 s. */
static void check_dpu_death(int threaded)
{
    hmaf_agent_params_t ap;
    hmaf_agent_t *agent;
    int report[2];
    pid_t dpu;
    char got;

    CHECK(pipe2(report, O_CLOEXEC) == 0);
    dpu = fork_child();
    if (dpu == 0) {
        close(report[0]);
        run_dpu(report[1]);
    }
    close(report[1]);
    hmaf_agent_params_init(&ap);
    ap.engine = "doca";
    ap.threaded = threaded;
    CHECK_OK(hmaf_agent_create(&ap, &agent));
    CHECK_OK(hmaf_agent_expose(agent, memory, sizeof(memory),
                               HMAF_ACCESS_READ_WRITE));
    CHECK_OK(hmaf_agent_dial(agent, host_address, 5000));
    got = dpu_report(agent, threaded, report[0]);
    if (got == 'p') {
        kill(dpu, SIGKILL);
        SKIP("our child, the dpu side, may not reach our memory (ptrace)");
    }
    CHECK_EQ(got, 'r');
    if (!threaded) {
        check_idle_poll(agent);
    }
    kill(dpu, SIGKILL);
    CHECK(wait_closed(agent, threaded));
    CHECK(waitpid(dpu, NULL, 0) == dpu);
    close(report[0]);
    hmaf_agent_destroy(agent);
}

/* A device whose messages cannot hold the handshake: both sides say so at
 * once, before any message. */
static void check_message_limit(void)
{
    hmaf_agent_params_t ap;
    hmaf_agent_t *agent;
    hmaf_session_t *s;

    set_fault("DOCA_EMU_COMCH_MAX_MSG", "64");
    CHECK_ERR(open_dpu(&s), HMAF_ENOSPC);
    hmaf_agent_params_init(&ap);
    ap.engine = "doca";
    CHECK_OK(hmaf_agent_create(&ap, &agent));
    CHECK_ERR(hmaf_agent_dial(agent, host_address, 5000), HMAF_ENOSPC);
    hmaf_agent_destroy(agent);
    set_fault("DOCA_EMU_COMCH_MAX_MSG", NULL);
}

/* Names: the device's cap (NUL included) decides, at listen and dial. */
static void check_names(void)
{
    char name[80], address[160];
    struct hmaf_listener *l;
    hmaf_agent_params_t ap;
    hmaf_agent_t *agent;
    hmaf_session_params_t p;
    hmaf_session_t *s;

    memset(name, 'n', 64);
    name[64] = '\0'; /* one byte too many for the default cap of 64 */
    hmaf_session_params_init(&p);
    p.engine = "doca";
    p.listen = 1;
    p.address = address;
    snprintf(address, sizeof(address), "comch:%s@%s/%s", name, DPU_PCI,
             HOST_PCI);
    CHECK_ERR(hmaf_session_create(&p, &s), HMAF_EINVAL);
    hmaf_agent_params_init(&ap);
    ap.engine = "doca";
    CHECK_OK(hmaf_agent_create(&ap, &agent));
    snprintf(address, sizeof(address), "comch:%s@%s", name, HOST_PCI);
    CHECK_ERR(hmaf_agent_dial(agent, address, 100), HMAF_EINVAL);
    hmaf_agent_destroy(agent);

    /* A device that takes longer names: not cut at a number of our own. */
    set_fault("DOCA_EMU_COMCH_MAX_NAME", "80");
    snprintf(address, sizeof(address), "comch:%s-%d@%s/%s", name, (int)getpid(),
             DPU_PCI, HOST_PCI);
    CHECK_OK(hmaf__listener_open(address, &l));
    hmaf__listener_close(l);
    set_fault("DOCA_EMU_COMCH_MAX_NAME", NULL);
}

/* Nobody ever listens: the dial retries, then times out. */
static void check_no_server(void)
{
    char address[96];
    hmaf_agent_params_t ap;
    hmaf_agent_t *agent;

    snprintf(address, sizeof(address), "comch:hmaf-none%d@%s", (int)getpid(),
             HOST_PCI);
    hmaf_agent_params_init(&ap);
    ap.engine = "doca";
    CHECK_OK(hmaf_agent_create(&ap, &agent));
    CHECK_ERR(hmaf_agent_dial(agent, address, 200), HMAF_ETIMEDOUT);
    hmaf_agent_destroy(agent);
}

/* The host dials first, the dpu side listens later: the emulation refuses
 * a client started before its server, as a card does, so only the host's
 * retries make the session. */
static void check_late_server(void)
{
    hmaf_session_t *s;
    int cmd_fd;
    pid_t host = fork_host(1, &cmd_fd); /* dials for up to 5 s */

    nanosleep(&(struct timespec){0, 300000000}, NULL);
    CHECK_OK(open_dpu(&s));
    check_rw(s);
    hmaf_session_destroy(s);
    end_host(host, cmd_fd);
}

/* An instance's message size is a default (64 here) until set: the
 * session works only because both sides set the device's cap. */
static void check_default_msg_size(void)
{
    hmaf_session_t *s;
    int cmd_fd;
    pid_t host;

    set_fault("DOCA_EMU_COMCH_DEFAULT_MSG", "64"); /* the host's too */
    host = fork_host(1, &cmd_fd);
    CHECK_OK(open_dpu(&s));
    check_rw(s);
    hmaf_session_destroy(s);
    end_host(host, cmd_fd);
    set_fault("DOCA_EMU_COMCH_DEFAULT_MSG", NULL);
}

/* The dpu side closes its channel with no goodbye message: a comch server
 * stopped without disconnecting its client leaves that client believing
 * it is connected (the emulation enforces it), so the host learning of
 * the close proves the close disconnects. Channels alone: no session. */
static void check_server_close(void)
{
    struct hmaf_listener *l;
    struct hmaf_channel ch;
    int status, sync[2];
    pid_t host;
    char c;

    CHECK(pipe2(sync, O_CLOEXEC) == 0);
    host = fork_child();
    if (host == 0) {
        uint64_t start;
        CHECK_OK(hmaf__channel_connect(host_address, 5000, &ch));
        CHECK(write(sync[1], "c", 1) == 1); /* connected and not told yet */
        start = hmaf__now_ns();
        while (!hmaf__channel_peer_gone(&ch)) {
            if (hmaf__now_ns() - start > 5 * PROMPT_NS) {
                _exit(1); /* never told */
            }
            nanosleep(&(struct timespec){0, 1000000}, NULL);
        }
        hmaf__channel_close(&ch);
        _exit(0);
    }
    CHECK_OK(hmaf__listener_open(dpu_address, &l));
    CHECK_OK(hmaf__listener_accept_wait(l, 5000, &ch));
    hmaf__listener_close(l);
    CHECK(read(sync[0], &c, 1) == 1);
    hmaf__channel_close(&ch); /* and this process lives on */
    CHECK(waitpid(host, &status, 0) == host);
    CHECK(WIFEXITED(status));
    CHECK_EQ(WEXITSTATUS(status), 0);
    close(sync[0]);
    close(sync[1]);
}

int main(void)
{
    /* Unique per run: abstract sockets are shared by concurrent builds. */
    snprintf(host_address, sizeof(host_address), "comch:hmaf-t%d@%s",
             (int)getpid(), HOST_PCI);
    snprintf(dpu_address, sizeof(dpu_address), "comch:hmaf-t%d@%s/%s",
             (int)getpid(), DPU_PCI, HOST_PCI);
    check_directions();
    check_names();
    check_no_server();
    check_server_close();
    check_end_to_end();
    check_late_server();
    check_default_msg_size();
    check_link_drop();
    check_dma_failure();
    check_agent_destroy();
    check_dpu_death(0);
    check_dpu_death(1);
    check_message_limit();
    printf("comch: ok\n");
    return 0;
}
