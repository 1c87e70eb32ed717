// Logging: one line per event on stderr, leveled, with a configurable prefix (the node, and for
// the directory its role). Text ("2026-11-26T10:00:00.123Z I [dir-1] message") or JSON lines.
// Thread-safe.
#pragma once

#include <string>
#include "absl/strings/string_view.h"

#include "absl/strings/str_format.h"

namespace zmesh::log {

enum class Level { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };
enum class Format { kText, kJson };

// Process-wide settings; call before starting threads that log.
void SetLevel(Level level);
void SetFormat(Format format);
void SetPrefix(std::string prefix);
// Parses "debug|info|warning|error" / "text|json"; false on an unknown word.
bool ParseLevel(absl::string_view text, Level* level);
bool ParseFormat(absl::string_view text, Format* format);

bool Enabled(Level level);
void Write(Level level, absl::string_view message);

}  // namespace zmesh::log

#define ZMESH_LOG_AT(level, ...)                                  \
  do {                                                            \
    if (::zmesh::log::Enabled(level)) {                           \
      ::zmesh::log::Write(level, ::absl::StrFormat(__VA_ARGS__)); \
    }                                                             \
  } while (0)

#define ZLOG_DEBUG(...) ZMESH_LOG_AT(::zmesh::log::Level::kDebug, __VA_ARGS__)
#define ZLOG_INFO(...) ZMESH_LOG_AT(::zmesh::log::Level::kInfo, __VA_ARGS__)
#define ZLOG_WARNING(...) ZMESH_LOG_AT(::zmesh::log::Level::kWarning, __VA_ARGS__)
#define ZLOG_ERROR(...) ZMESH_LOG_AT(::zmesh::log::Level::kError, __VA_ARGS__)
