/*
 * Regression: "hmaf_session_destroy() gives back its cached blocks and
 * pending frees, even to a host that was stopped" (heap.h).
 *
 * The agent serves the FREEs a session leaves in its mailbox only when
 * its dpu side has stopped for sure: when it closed its end of the
 * channel. A dpu side whose requests found the agent asleep rang its
 * doorbell, one nudge byte each; with the host stopped nobody took them,
 * so they lay in front of the end of file. The agent looked for the end
 * of file with a one-byte peek, saw a nudge, judged the peer merely
 * talkative, and closed the session without serving its last FREEs: the
 * blocks stayed allocated (test_alloc destroy failed about one run in
 * three under load).
 *
 * Here, for a unix and a tcp channel: nudges then a close, nudges then a
 * half-close (how a dpu side ends after its fence) and nudges alone.
 * Exit 1 when a closed peer is not seen closed, or a live one is.
 */
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "channel/channel.h"
#include "check.h"

enum ending { CLOSE, HALF_CLOSE, STAY };

static void nudge_then(struct hmaf_channel *near, struct hmaf_channel *far,
                       enum ending how)
{
    for (int i = 0; i < 3; i++) {
        hmaf__channel_nudge(far);
    }
    if (how == CLOSE) {
        hmaf__channel_close(far);
    } else if (how == HALF_CLOSE) {
        CHECK_EQ(shutdown(far->fd, SHUT_WR), 0);
    }
    /* Over tcp the end of file may trail the nudges a little: up to 5 s
     * for it (the old peek never saw it). */
    for (int i = 0; i < 500 && hmaf__channel_peer_closed(near) != (how != STAY);
         i++) {
        usleep(10000);
    }
    /* Twice: looking takes nothing away. */
    CHECK_EQ(hmaf__channel_peer_closed(near), how != STAY);
    CHECK_EQ(hmaf__channel_peer_closed(near), how != STAY);
    CHECK_EQ(hmaf__channel_peer_gone(near), how != STAY);
}

static void unix_case(enum ending how)
{
    int sv[2];

    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    struct hmaf_channel near = {.fd = sv[0]}, far = {.fd = sv[1]};
    nudge_then(&near, &far, how);
    hmaf__channel_close(&near);
    hmaf__channel_close(&far);
}

static void tcp_case(enum ending how)
{
    struct hmaf_listener *l;
    struct hmaf_channel near, far;

    CHECK_OK(hmaf__listener_open("tcp:127.0.0.1:0", &l));
    CHECK_OK(hmaf__channel_connect(hmaf__listener_address(l), 5000, &far));
    CHECK_OK(hmaf__listener_accept_wait(l, 5000, &near));
    nudge_then(&near, &far, how);
    hmaf__channel_close(&near);
    hmaf__channel_close(&far);
    hmaf__listener_close(l);
}

int main(void)
{
    for (enum ending how = CLOSE; how <= STAY; how++) {
        unix_case(how);
        tcp_case(how);
    }
    return 0;
}
