#include "common/log.h"

#include <atomic>
#include <cstdio>
#include <string>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace zmesh::log {
namespace {

struct Settings {
  // Read on every log statement: an atomic, not the mutex.
  std::atomic<int> level{static_cast<int>(Level::kInfo)};
  absl::Mutex mu;
  Format format ABSL_GUARDED_BY(mu) = Format::kText;
  std::string prefix ABSL_GUARDED_BY(mu);
  std::string role ABSL_GUARDED_BY(mu);  // empty: no Raft state shown
  uint64_t term ABSL_GUARDED_BY(mu) = 0;
};

Settings& GetSettings() {
  static Settings* settings = new Settings();
  return *settings;
}

const char* LevelName(Level level) {
  switch (level) {
    case Level::kDebug:
      return "debug";
    case Level::kInfo:
      return "info";
    case Level::kWarning:
      return "warning";
    case Level::kError:
      return "error";
  }
  return "info";
}

// Length of the valid UTF-8 sequence starting at s[i], or 0 if there is none.
size_t Utf8Length(absl::string_view s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  size_t n = 0;
  uint32_t min = 0;
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) {
    n = 2;
    min = 0x80;
  } else if ((c & 0xF0) == 0xE0) {
    n = 3;
    min = 0x800;
  } else if ((c & 0xF8) == 0xF0) {
    n = 4;
    min = 0x10000;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  uint32_t code = c & (0x7F >> n);
  for (size_t k = 1; k < n; ++k) {
    const auto cont = static_cast<unsigned char>(s[i + k]);
    if ((cont & 0xC0) != 0x80) return 0;
    code = (code << 6) | (cont & 0x3F);
  }
  if (code < min || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return 0;
  return n;
}

// Escapes for a JSON string (json) or for a one-line text log (control characters only).
std::string Escape(absl::string_view s, bool json) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '"' && json) {
      out += "\\\"";
    } else if (c == '\\' && json) {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7F) {
      out += absl::StrFormat("\\u%04x", c);
    } else if (c >= 0x80 && json) {
      const size_t n = Utf8Length(s, i);
      if (n == 0) {
        out += "\\ufffd";
        ++i;
      } else {
        out.append(s.data() + i, n);
        i += n;
      }
      continue;
    } else {
      out += static_cast<char>(c);
    }
    ++i;
  }
  return out;
}

}  // namespace

void SetLevel(Level level) {
  GetSettings().level.store(static_cast<int>(level), std::memory_order_relaxed);
}

void SetFormat(Format format) {
  absl::MutexLock lock(&GetSettings().mu);
  GetSettings().format = format;
}

void SetPrefix(std::string prefix) {
  absl::MutexLock lock(&GetSettings().mu);
  GetSettings().prefix = std::move(prefix);
}

void SetRaftState(absl::string_view role, uint64_t term) {
  absl::MutexLock lock(&GetSettings().mu);
  GetSettings().role = std::string(role);
  GetSettings().term = term;
}

bool ParseLevel(absl::string_view text, Level* level) {
  for (Level l : {Level::kDebug, Level::kInfo, Level::kWarning, Level::kError}) {
    if (text == LevelName(l)) {
      *level = l;
      return true;
    }
  }
  return false;
}

bool ParseFormat(absl::string_view text, Format* format) {
  if (text == "text") {
    *format = Format::kText;
  } else if (text == "json") {
    *format = Format::kJson;
  } else {
    return false;
  }
  return true;
}

bool Enabled(Level level) {
  return static_cast<int>(level) >= GetSettings().level.load(std::memory_order_relaxed);
}

namespace {

std::string FormatLocked(Settings& s, Level level, absl::string_view message)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
  const std::string time =
      absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone());
  if (s.format == Format::kJson) {
    std::string raft;
    if (!s.role.empty()) {
      raft = absl::StrFormat(R"(,"role":"%s","term":%d)", Escape(s.role, true), s.term);
    }
    return absl::StrFormat(R"({"time":"%s","level":"%s","node":"%s"%s,"msg":"%s"})", time,
                           LevelName(level), Escape(s.prefix, true), raft, Escape(message, true));
  }
  std::string raft;
  if (!s.role.empty()) raft = absl::StrFormat(" %s term=%d", s.role, s.term);
  return absl::StrFormat("%s %c [%s%s] %s", time, LevelName(level)[0] - 'a' + 'A', s.prefix, raft,
                         Escape(message, false));
}

}  // namespace

void Write(Level level, absl::string_view message) {
  Settings& s = GetSettings();
  absl::MutexLock lock(&s.mu);
  std::string line = FormatLocked(s, level, message);
  line += '\n';
  // One fwrite per line under the lock keeps lines whole when threads log at once.
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace zmesh::log
