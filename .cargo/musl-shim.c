/* Three glibc-only symbols that a gnu-target Rust program references, for
 * linking it against musl's static libc instead (see .cargo/musl-cc).
 *
 * gnu_get_libc_version: std calls it (sys::os::glibc_version) to decide
 * whether posix_spawn is safe (>= 2.24) and whether to call res_init
 * (< 2.26). A string that is not a glibc version makes std treat the
 * libc as "not glibc": it spawns with fork+exec and never calls res_init.
 *
 * _dl_find_object: GCC 12's libgcc_eh.a (the unwinder std links) uses it
 * instead of dl_iterate_phdr to find .eh_frame_hdr for a PC; only
 * backtraces need it (panic = "abort"). Same answer, via dl_iterate_phdr,
 * which musl implements for static binaries.
 */
#include <link.h>
#include <stddef.h>
#include <stdint.h>

const char *gnu_get_libc_version(void) { return "musl"; }

struct dl_find_object {          /* glibc 2.35+ <bits/dl_find_object.h>, x86-64 */
	unsigned long long dlfo_flags;
	void *dlfo_map_start, *dlfo_map_end;
	void *dlfo_link_map;
	void *dlfo_eh_frame;
	unsigned long long reserved[7];
};

struct query { uintptr_t pc; struct dl_find_object *out; };

static int find(struct dl_phdr_info *info, size_t size, void *data)
{
	struct query *q = data;
	uintptr_t lo = UINTPTR_MAX, hi = 0;
	void *eh = NULL;
	int hit = 0;
	(void)size;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *p = &info->dlpi_phdr[i];
		uintptr_t start = info->dlpi_addr + p->p_vaddr;
		if (p->p_type == PT_LOAD) {
			if (q->pc >= start && q->pc < start + p->p_memsz) hit = 1;
			if (start < lo) lo = start;
			if (start + p->p_memsz > hi) hi = start + p->p_memsz;
		} else if (p->p_type == PT_GNU_EH_FRAME) {
			eh = (void *)start;
		}
	}
	if (!hit) return 0;
	*q->out = (struct dl_find_object){ .dlfo_map_start = (void *)lo,
		.dlfo_map_end = (void *)hi, .dlfo_eh_frame = eh };
	return 1;
}

int _dl_find_object(void *pc, struct dl_find_object *out)
{
	struct query q = { (uintptr_t)pc, out };
	return dl_iterate_phdr(find, &q) ? 0 : -1;
}

/* __res_init: std's TCP connect and address lookup reference glibc's
 * resolver reset, to call after a failed lookup on glibc < 2.26 only; with
 * the version above std never calls it, but the link needs the symbol.
 * musl's own res_init is a no-op returning 0 as well. */
int __res_init(void) { return 0; }
