/* udp-sink PORT: a local syslog receiver for the real-Xen suite. Binds 127.0.0.1:PORT (UDP)
 * and prints each datagram as one line "SYSLOG: <message>" on stdout, flushed, until killed.
 * Line breaks inside a message (none are allowed by RFC 5424's header; CEF escapes them) are
 * printed as "\n", so one datagram is always one line. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

int main(int argc, char **argv) {
  if (argc != 2) { fprintf(stderr, "usage: udp-sink PORT\n"); return 2; }
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) != 0) { perror("udp-sink: bind"); return 1; }
  static char buf[65536];
  for (;;) {
    ssize_t n = recv(s, buf, sizeof buf, 0);
    if (n < 0) { perror("udp-sink: recv"); return 1; }
    fputs("SYSLOG: ", stdout);
    for (ssize_t i = 0; i < n; i++) {
      if (buf[i] == '\n') fputs("\\n", stdout); else putchar(buf[i]);
    }
    putchar('\n');
    fflush(stdout);
  }
}
