/*
 * The comch channel end to end, against the DOCA emulation (built with
 * hmaf_static_doca): a forked host agent on engine "doca" dials the dpu
 * side (this process, listening as the comch server), which reads and
 * writes the exposed memory, then sees the host die. The dpu side is the
 * host's parent, as the emulation's DMA needs where Yama is strict.
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <doca_emu.h>
#include <hmaf/hmaf.h>

#include "check.h"
#include "util/clock.h"

#define HOST_PCI "b1:00.0" /* the emulation's defaults */
#define DPU_PCI "03:00.0"

static uint8_t memory[8192];
static char host_address[96], dpu_address[96];

/* The host: expose, dial, then serve until killed. */
static void run_host(void)
{
    hmaf_agent_params_t ap;
    hmaf_agent_t *agent;
    int ret;

    for (size_t i = 0; i < sizeof(memory); i++) {
        memory[i] = (uint8_t)(i * 7 + 1);
    }
    hmaf_agent_params_init(&ap);
    ap.engine = "doca";
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
    for (;;) {
        pause();
    }
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
    while (ret == 0 && hmaf__now_ns() - start < 1000000000ull) {
        ret = hmaf_session_read(s, v, addr, sizeof(v));
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    CHECK_ERR(ret, HMAF_ECONNRESET);
    CHECK_ERR(hmaf_session_ping(s), HMAF_ECONNRESET);
}

/* A HELLO larger than the channel's max message size is not sent. */
static void check_message_limit(void)
{
    hmaf_session_t *s;
    pid_t host;

    setenv("DOCA_EMU_COMCH_MAX_MSG", "64", 1);
    doca_emu_reset();
    host = fork();
    CHECK(host >= 0);
    if (host == 0) {
        run_host(); /* dials with the same small limit; never answered */
    }
    CHECK_ERR(open_dpu(&s), HMAF_ENOSPC);
    kill(host, SIGKILL);
    waitpid(host, NULL, 0);
    unsetenv("DOCA_EMU_COMCH_MAX_MSG");
    doca_emu_reset();
}

int main(void)
{
    hmaf_session_t *s;
    pid_t host;
    int ret;

    /* Unique per run: abstract sockets are shared by concurrent builds. */
    snprintf(host_address, sizeof(host_address), "comch:hmaf-t%d@%s",
             (int)getpid(), HOST_PCI);
    snprintf(dpu_address, sizeof(dpu_address), "comch:hmaf-t%d@%s/%s",
             (int)getpid(), DPU_PCI, HOST_PCI);
    check_directions();
    host = fork();
    CHECK(host >= 0);
    if (host == 0) {
        run_host();
    }
    ret = open_dpu(&s);
    if (ret == HMAF_EPERM || ret == HMAF_EACCES) {
        kill(host, SIGKILL);
        SKIP("no ptrace right over the host process (%s)",
             hmaf_strerror(ret));
    }
    CHECK_OK(ret);
    check_rw(s);
    check_host_death(s, host);
    hmaf_session_destroy(s);
    check_message_limit();
    printf("comch: ok\n");
    return 0;
}
