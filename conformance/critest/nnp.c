/* critest's nonewprivs image runs this set-user-ID-root program as uid 1000:
 * it prints the effective uid, 0 when the set-uid bit took effect (no
 * no_new_privs) and 1000 when it did not. */
#include <stdio.h>
#include <unistd.h>

int main(void) {
	printf("Effective uid: %d\n", (int)geteuid());
	return 0;
}
