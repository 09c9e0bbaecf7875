#include "http/webview/assets.h"

namespace floe::http::webview {

const EmbeddedFile* FindFile(std::string_view name) {
  for (const EmbeddedFile& f : EmbeddedFiles())
    if (f.name == name) return &f;
  return nullptr;
}

std::string_view ContentType(std::string_view name) {
  struct Type {
    std::string_view extension;
    std::string_view content_type;
  };
  static constexpr Type kTypes[] = {
      {".html", "text/html; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".svg", "image/svg+xml"},
      {".png", "image/png"},
  };
  for (const Type& t : kTypes)
    if (name.ends_with(t.extension)) return t.content_type;
  return "application/octet-stream";
}

}  // namespace floe::http::webview
