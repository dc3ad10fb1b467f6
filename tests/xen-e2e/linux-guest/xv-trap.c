/* A guest program that executes its own int3s and counts the SIGTRAPs the kernel delivers
 * for them. Under a monitor that traps every int3 (xenvmi's hook manager), the count is right
 * only if each int3 that is not the monitor's is handed back to the guest. Each round also
 * calls getppid(), which the suite's kprobe module probes. Prints one line to the kernel log:
 *   xv-trap: int3 N sigtrap M getppid K */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

static volatile sig_atomic_t traps;

static void on_trap(int sig)
{
	(void)sig;
	traps++;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 40, calls = 0;
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_trap;
	sigaction(SIGTRAP, &sa, NULL);
	for (int i = 0; i < n; i++) {
		__asm__ volatile("int3");
		if (getppid() > 0)
			calls++;
		usleep(2000);
	}
	char line[128];
	int len = snprintf(line, sizeof line, "xv-trap: int3 %d sigtrap %d getppid %d\n", n, (int)traps, calls);
	int fd = open("/dev/kmsg", O_WRONLY);
	if (fd >= 0) {
		write(fd, line, len);
		close(fd);
	}
	fputs(line, stdout);
	return traps == n ? 0 : 1;
}
