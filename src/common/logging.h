// Logging set-up. Everything logs through spdlog; this file configures the format:
// klog-style text (`I1122 04:39:04.123456 1234 file.cc:42] msg`) by default, or one JSON
// object per line. Verbosity follows klog's -v: 0 = info, 1..4 = debug, 5+ = trace.
#pragma once

#include <string_view>

namespace knd {

enum class LogFormat { kText, kJson };

void InitLogging(LogFormat format, int verbosity);

}  // namespace knd
