// Package filesystem holds the storage.Driver that keeps content as files under a local root directory.
// It may import only the standard library, golang.org/x/sys/unix (Linux writeback hints) and package storage.
//
// # Durability
//
// What a caller is told is written survives a crash of the machine (a
// power loss, a kernel panic), not only of the process, unless the caller
// said it need not (storage.WithoutSync):
//
//   - a writer's Commit or Close returns after the file's content is
//     fsynced, the file renamed from .berth-tmp into place, and the
//     directory it landed in fsynced; a directory created on the way is
//     made durable by an fsync of its parent, and so is every directory
//     above that is not durable yet, whoever created it (a writer
//     WithoutSync syncs nothing, not even the directories it creates:
//     they are synced by the first durable write beneath them, if any,
//     and an upload session's are never synced; past 1,024 such
//     directories one syncfs makes them all durable, so that those beneath
//     which nothing durable is written do not pile up); as a process cannot
//     know which directories a crashed one left unsynced, New syncs the
//     whole file system (syncfs) when the root holds content;
//   - those directory fsyncs are group-committed: a writer's directories
//     are synced together, in one round, after its rename, and writers
//     that finish while a round runs share the next one, each directory
//     synced once for all of them (dirsync.go);
//   - Move returns after the rename and an fsync of the destination's
//     directory (and of each parent of a directory it created);
//   - Delete is not synced: a deletion may be undone by a crash of the
//     machine, which leaves content that garbage collection removes again.
//
// So when the registry answers 201 to a blob push, the blob's bytes, its
// data file's name in blobs/ and the repository's layer link (content and
// name) are on disk; so is a manifest's body, revision link and tag link
// when it answers 201 to a manifest push. What it writes WithoutSync, and
// a crash of the machine may lose, it can rebuild or do without: an
// upload's startedat file, hash state and the data of its chunks (an
// upload in progress is not promised to survive: the client starts it
// again; a lost hash state is rebuilt by hashing the data again; the
// upload's last request syncs all of its data before it moves into
// blobs/), garbage-collection leases (read only by collectors running
// at the same time, which such a crash ends) and a tag's history entry
// (its index link, read only to clean it up; the tag's current link is
// synced). A blob pushed whole (POST
// with its digest, or a PUT that carries all of it) is written straight to
// its own path, never to an upload directory. A blob whose bytes are
// stored already is not written at all: its body is hashed, to prove the
// client has the bytes, and only the repository's layer link is written.
package filesystem
