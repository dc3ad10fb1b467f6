/* A guest program whose every traced act is known in advance, for the suite's `trace` checks.
 * Run as `/bin/xv-probe first "two words"`: it opens a file that exists and one that does
 * not, makes mkdir and chdir system calls with known paths, and exits with status 7. It
 * reports what the kernel told it to the kernel log, which the suite compares with what
 * `trace --json` reported from outside:
 *   xv-probe: pid P ppid Q open F enoent E mkdir M chdir C */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void)
{
	int fd = open("/etc/xv-known", O_RDONLY);
	int missing = open("/xv-missing/none", O_RDONLY);
	int enoent = missing < 0 ? errno : 0;
	/* The raw calls, so that the C library cannot pick mkdirat or fchdir instead. */
	long mk = syscall(SYS_mkdir, "/xv-made", 0750);
	int mk_errno = mk < 0 ? errno : 0;
	long cd = syscall(SYS_chdir, "/xv-made");
	char line[160];
	int len = snprintf(line, sizeof line, "xv-probe: pid %d ppid %d open %d enoent %d mkdir %d chdir %ld\n",
			   (int)getpid(), (int)getppid(), fd, enoent, mk < 0 ? -mk_errno : 0, cd);
	int k = open("/dev/kmsg", O_WRONLY);
	if (k >= 0) {
		write(k, line, len);
		close(k);
	}
	return 7;
}
