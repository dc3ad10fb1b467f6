/* Headers bindgen reads for the `xen` feature (types and constants only: the functions are
 * loaded at run time by SONAME, see src/backend/xen/lib.rs). */
#define __XEN_TOOLS__ 1
#include <stdint.h>
#include <xenctrl.h>
#include <xenevtchn.h>
#include <xenforeignmemory.h>
#include <xen/vm_event.h>
#include <xen/hvm/save.h>
#include <xen/hvm/params.h>
#include <xen/version.h>
