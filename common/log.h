// Logging: one line per event on stderr, leveled, prefixed with the node (e.g. "directory-1",
// "proxy-node-a") and, in zmesh-directory, the replica's current Raft role and term (updated at
// every role or term change). Two formats (docs/metrics.md "Logs"):
//   text: 2026-11-26T10:00:00.123Z I [directory-1 leader term=3] message
//   json: {"time":"2026-11-26T10:00:00.123Z","level":"info","node":"directory-1",
//          "role":"leader","term":3,"msg":"message"}
// (role and term only once SetRaftState was called). Control characters in messages are escaped
// in both formats, so a line is always one event; JSON lines are valid JSON (bytes that are not
// UTF-8 become U+FFFD). Messages name what happened, with sizes and reasons: callers never log a
// message payload. Thread-safe.
#pragma once

#include <cstdint>
#include <string>

#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"

namespace zmesh::log {

enum class Level { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };
enum class Format { kText, kJson };

// Process-wide settings; SetLevel/SetFormat/SetPrefix before starting threads that log.
void SetLevel(Level level);
void SetFormat(Format format);
// The node shown on every line.
void SetPrefix(std::string prefix);
// The Raft role ("leader", "follower", ...) and term shown after the node from now on; may be
// called at any time from any thread.
void SetRaftState(absl::string_view role, uint64_t term);
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
