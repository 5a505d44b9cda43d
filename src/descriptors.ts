/**
 * What a process's file descriptors are, from /proc: Deno hands out no
 * descriptor numbers for a child's pipes or a socket, so phonehome finds
 * them by what they link to (`pipe:[inode]`, `socket:[inode]`).
 *
 * @module
 */

/** What descriptor `fd` of process `pid` ("self" for this one) links to; undefined when gone. */
export function descriptorLink(pid: number | "self", fd: number): string | undefined {
  try {
    return Deno.readLinkSync(`/proc/${pid}/fd/${fd}`);
  } catch {
    return undefined;
  }
}

/** This process's open descriptors and what each links to; none where /proc cannot be read. */
export function ownDescriptors(): Array<{ fd: number; link: string }> {
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync("/proc/self/fd")];
  } catch {
    return [];
  }
  return entries.flatMap((entry) => {
    const fd = Number(entry.name);
    const link = descriptorLink("self", fd);
    return link === undefined ? [] : [{ fd, link }];
  });
}
