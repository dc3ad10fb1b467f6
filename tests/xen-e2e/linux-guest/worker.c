/* A guest process with a recognisable name that keeps switching address spaces (each
 * sched_yield lets the other workers run), so cr3-trace sees CR3 writes owned by it. */
#include <sched.h>
#include <unistd.h>
int main(void)
{
	for (;;) {
		for (volatile int i = 0; i < 100000; i++)
			;
		usleep(20000);
	}
}
