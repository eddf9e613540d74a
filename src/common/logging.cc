#include "common/logging.h"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace knd {

void InitLogging(LogFormat format, int verbosity) {
  auto logger = spdlog::stderr_logger_mt("knd");
  if (format == LogFormat::kJson) {
    logger->set_pattern(
        R"({"ts":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l","pid":%P,"caller":"%s:%#","msg":"%v"})",
        spdlog::pattern_time_type::utc);
  } else {
    // klog header: Lmmdd hh:mm:ss.uuuuuu threadid file:line] msg
    logger->set_pattern("%L%m%d %H:%M:%S.%f %t %s:%#] %v", spdlog::pattern_time_type::utc);
  }
  if (verbosity >= 5) {
    logger->set_level(spdlog::level::trace);
  } else if (verbosity >= 1) {
    logger->set_level(spdlog::level::debug);
  } else {
    logger->set_level(spdlog::level::info);
  }
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

}  // namespace knd
