// Scraping a daemon's Prometheus endpoint in tests: a plain HTTP GET over loopback and a parser
// of the text exposition format.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace zmesh::testing {

// GET http://127.0.0.1:PORT/PATH (HTTP/1.0, a fresh connection, 5 s timeout). The body when
// the status is 200; an error naming the status line otherwise.
[[nodiscard]] absl::StatusOr<std::string> HttpGet(int port, const std::string& path);

// One parsed scrape.
class Scrape {
 public:
  struct Sample {
    std::string name;
    std::map<std::string, std::string> labels;
    double value = 0;
  };

  // GETs /metrics from 127.0.0.1:PORT and parses it; INVALID_ARGUMENT for a line that is not a
  // sample or a comment.
  [[nodiscard]] static absl::StatusOr<Scrape> Fetch(int port);
  [[nodiscard]] static absl::StatusOr<Scrape> Parse(const std::string& text);

  // Sum of the samples named `name` whose labels include every pair of `labels`.
  double Sum(const std::string& name, const std::map<std::string, std::string>& labels = {}) const;
  // How many such samples there are.
  int Count(const std::string& name, const std::map<std::string, std::string>& labels = {}) const;
  // "# TYPE name <type>" as served ("" when absent).
  std::string Type(const std::string& name) const;

  const std::vector<Sample>& samples() const { return samples_; }
  const std::string& text() const { return text_; }

 private:
  std::vector<Sample> samples_;
  std::map<std::string, std::string> types_;
  std::string text_;
};

}  // namespace zmesh::testing
