#include "sysfs/reader.h"

#include <dirent.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status.h"

namespace knd::sysfs {

Reader::Reader(std::string root) : root_(std::move(root)) {
  while (root_.size() > 1 && root_.back() == '/') root_.pop_back();
}

std::string Reader::Path(const std::string& rel) const {
  if (rel.empty()) return root_;
  return rel.front() == '/' ? root_ + rel : root_ + "/" + rel;
}

absl::StatusOr<std::string> Reader::ReadString(const std::string& rel) const {
  absl::StatusOr<std::string> s = ReadFile(Path(rel));
  if (!s.ok()) return s.status();
  return std::string(absl::StripTrailingAsciiWhitespace(*s));
}

absl::StatusOr<int64_t> Reader::ReadInt(const std::string& rel) const {
  absl::StatusOr<std::string> s = ReadString(rel);
  if (!s.ok()) return s.status();
  std::string text(absl::StripAsciiWhitespace(*s));
  int64_t v = 0;
  bool ok = false;
  if (text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
    ok = absl::SimpleHexAtoi(text.substr(2), &v);
  } else {
    ok = absl::SimpleAtoi(text, &v);
  }
  if (!ok) {
    return absl::InvalidArgumentError(
        absl::StrCat(Path(rel), ": not an integer: \"", text.substr(0, 32), "\""));
  }
  return v;
}

absl::StatusOr<std::string> Reader::ReadLink(const std::string& rel) const {
  std::string p = Path(rel);
  char buf[PATH_MAX];
  ssize_t n = readlink(p.c_str(), buf, sizeof(buf) - 1);
  if (n < 0) return ErrnoStatus(absl::StrCat("readlink ", p));
  return std::string(buf, static_cast<size_t>(n));
}

absl::StatusOr<std::string> Reader::Resolve(const std::string& rel) const {
  std::string p = Path(rel);
  char* real = realpath(p.c_str(), nullptr);
  if (real == nullptr) return ErrnoStatus(absl::StrCat("resolve ", p));
  std::string resolved(real);
  free(real);
  char* root_real = realpath(root_.c_str(), nullptr);
  if (root_real == nullptr) return ErrnoStatus(absl::StrCat("resolve ", root_));
  std::string root(root_real);
  free(root_real);
  if (root == "/") root.clear();
  if (resolved.compare(0, root.size(), root) != 0 ||
      (resolved.size() > root.size() && resolved[root.size()] != '/')) {
    return absl::FailedPreconditionError(
        absl::StrCat(p, " resolves to ", resolved, ", outside ", root_));
  }
  std::string out = resolved.substr(root.size());
  while (!out.empty() && out.front() == '/') out.erase(0, 1);
  return out;
}

absl::StatusOr<std::vector<std::string>> Reader::ListDir(const std::string& rel) const {
  std::string p = Path(rel);
  DIR* d = opendir(p.c_str());
  if (d == nullptr) return ErrnoStatus(absl::StrCat("opendir ", p));
  std::vector<std::string> out;
  while (dirent* e = readdir(d)) {
    std::string name(e->d_name);
    if (name == "." || name == "..") continue;
    out.push_back(std::move(name));
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

bool Reader::Exists(const std::string& rel) const {
  struct stat st;
  return stat(Path(rel).c_str(), &st) == 0;
}

std::string Basename(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  size_t slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

}  // namespace knd::sysfs
