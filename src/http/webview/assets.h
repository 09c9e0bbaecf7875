// The web view's static files (index.html, app.js, style.css beside this
// header), built into the binary: the page loads nothing from elsewhere and
// needs no build step of its own. src/http/webview/embed.cmake turns the
// files into a generated .cc of the floe_webview library at build time.
#pragma once

#include <span>
#include <string_view>

namespace floe::http::webview {

struct EmbeddedFile {
  std::string_view name;  // file name, e.g. "app.js"
  std::string_view body;  // its bytes, static storage
};

// Every file, in the generated .cc.
std::span<const EmbeddedFile> EmbeddedFiles();

// The file called `name`, or nullptr.
const EmbeddedFile* FindFile(std::string_view name);

// The Content-Type for a file name, by its extension (with charset for text);
// application/octet-stream for one it does not know.
std::string_view ContentType(std::string_view name);

}  // namespace floe::http::webview
