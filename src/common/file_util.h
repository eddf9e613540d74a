// Small file helpers: whole-file reads and crash-safe writes.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace knd {

// Reads a whole file. NotFound when it does not exist.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// Writes `data` to `path` so that a crash at any point leaves either the old or the new
// content, never a torn file: write to a temp file in the same directory, fsync it, rename
// over `path`, fsync the directory. Creates the parent directory (0755) if needed.
absl::Status WriteFileAtomic(const std::string& path, std::string_view data, int mode = 0644);

// Removes a file; a file that is already gone is success (idempotent).
absl::Status RemoveFile(const std::string& path);

// mkdir -p with the given mode for directories it creates.
absl::Status MakeDirs(const std::string& path, int mode = 0755);

}  // namespace knd
