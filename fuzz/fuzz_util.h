// Helpers shared by the libFuzzer harnesses (docs/fuzzing.md). Only for fuzz targets.
#pragma once

#include <stdlib.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "spdlog/spdlog.h"

namespace knd::fuzz {

// The code under test logs every refusal; at millions of inputs that is all the fuzzer would
// do. Set once per process, before the first input.
inline const bool kQuiet = [] {
  spdlog::set_level(spdlog::level::off);
  return true;
}();

// Reads a fuzz input front to back: a byte, or a string up to the next NUL (the rest when
// there is none). Reading past the end gives 0 and "".
class Input {
 public:
  Input(const uint8_t* data, size_t size) : rest_(reinterpret_cast<const char*>(data), size) {}
  uint8_t Byte() {
    if (rest_.empty()) return 0;
    uint8_t b = static_cast<uint8_t>(rest_[0]);
    rest_.remove_prefix(1);
    return b;
  }
  std::string Field() {
    size_t nul = rest_.find('\0');
    std::string out(rest_.substr(0, nul));
    rest_.remove_prefix(nul == std::string_view::npos ? rest_.size() : nul + 1);
    return out;
  }
  std::string_view Rest() const { return rest_; }
  bool empty() const { return rest_.empty(); }

 private:
  std::string_view rest_;
};

// A directory under /tmp for one process, emptied by Reset() and removed at exit.
class ScratchDir {
 public:
  ScratchDir() {
    char tmpl[] = "/tmp/knd-fuzz-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) ::abort();
    path_ = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  // Removes everything inside (the directory stays).
  void Reset() const {
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(path_, ec)) {
      std::filesystem::remove_all(e.path(), ec);
    }
  }

 private:
  std::string path_;
};

}  // namespace knd::fuzz
