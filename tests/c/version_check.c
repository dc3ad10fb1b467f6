/* Built against an installed xenvmi with pkg-config only (scripts/check-install.sh): the
 * header's version macros, the loaded library's version, and their compatibility check. */
#include <stdio.h>
#include <string.h>

#include <xenvmi.h>

int main(void) {
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", XVMI_VERSION_MAJOR, XVMI_VERSION_MINOR, XVMI_VERSION_PATCH);
    const char *have = xvmi_version();
    printf("header %s library %s number %u compatible %d\n", want, have, xvmi_version_number(),
           (int)xvmi_version_compatible());
    if (strcmp(want, have) != 0 || !xvmi_version_compatible())
        return 1;
    return 0;
}
