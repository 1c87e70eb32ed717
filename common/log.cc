#include "common/log.h"

#include <cstdio>
#include <string>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace zmesh::log {
namespace {

struct Settings {
  absl::Mutex mu;
  Level level ABSL_GUARDED_BY(mu) = Level::kInfo;
  Format format ABSL_GUARDED_BY(mu) = Format::kText;
  std::string prefix ABSL_GUARDED_BY(mu);
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

std::string JsonEscape(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        if (c < 0x20) {
          out += absl::StrFormat("\\u%04x", c);
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

}  // namespace

void SetLevel(Level level) {
  absl::MutexLock lock(&GetSettings().mu);
  GetSettings().level = level;
}

void SetFormat(Format format) {
  absl::MutexLock lock(&GetSettings().mu);
  GetSettings().format = format;
}

void SetPrefix(std::string prefix) {
  absl::MutexLock lock(&GetSettings().mu);
  GetSettings().prefix = std::move(prefix);
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
  absl::MutexLock lock(&GetSettings().mu);
  return level >= GetSettings().level;
}

void Write(Level level, absl::string_view message) {
  Settings& s = GetSettings();
  const std::string time =
      absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone());
  std::string line;
  {
    absl::MutexLock lock(&s.mu);
    if (s.format == Format::kJson) {
      line = absl::StrFormat(R"({"time":"%s","level":"%s","prefix":"%s","msg":"%s"})", time,
                             LevelName(level), JsonEscape(s.prefix), JsonEscape(message));
    } else {
      line = absl::StrFormat("%s %c [%s] %s", time, LevelName(level)[0] - 'a' + 'A', s.prefix,
                             message);
    }
    line += '\n';
    // One fwrite per line under the lock keeps lines whole when threads log at once.
    std::fwrite(line.data(), 1, line.size(), stderr);
    std::fflush(stderr);
  }
}

}  // namespace zmesh::log
