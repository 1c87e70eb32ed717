// Output of zmeshctl: aligned tables and "Key: value" blocks for people, JSON for scripts.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"

namespace zmesh::cli {

enum class OutputFormat { kTable, kJson };

// A table with a header row, columns left-aligned and separated by three spaces (like kubectl).
// Cells must not contain newlines.
class Table {
 public:
  explicit Table(std::vector<std::string> headers);
  // A row with fewer cells than headers is padded with empty cells; extra cells are dropped.
  void AddRow(std::vector<std::string> cells);
  size_t rows() const { return rows_.size(); }
  // The table, one line per row, each ending in '\n'; trailing spaces are trimmed.
  std::string Render(absl::string_view indent = "") const;

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

// "Key:   value" lines with the values aligned, like `kubectl describe`.
class KeyValues {
 public:
  void Add(std::string key, std::string value);
  std::string Render(absl::string_view indent = "") const;

 private:
  std::vector<std::pair<std::string, std::string>> entries_;
};

// The proto3 JSON of `message` with proto field names (snake_case) and every field present,
// including zero values. `multiline` adds indentation and newlines; otherwise the result is
// one line. Never fails for the messages zmeshctl prints (a failure is a CHECK).
std::string ToJson(const google::protobuf::Message& message, bool multiline = true);

// Escapes and quotes a string as a JSON string literal.
std::string JsonQuote(absl::string_view text);

// Makes text fit on one line of output (newlines and tabs become spaces; other control
// characters become \xNN).
std::string OneLine(absl::string_view text);

}  // namespace zmesh::cli
