// What arrives on the NRI socket, byte for byte: the mux trunk's frames (cut into arbitrary
// reads), their ttrpc frames for the plugin's server (ConnID 1) and for its client's
// responses (ConnID 2). No registered method: the server answers every request with an error,
// so this is the framing, stream-id and size checks only (nri_request_fuzz does the rest).
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_util.h"
#include "nri/mux.h"
#include "nri/ttrpc.h"

namespace nri = knd::nri;

namespace {

// Discards what the server and client write back, but checks it is well framed.
class Sink : public nri::ByteStream {
 public:
  absl::Status Write(std::string_view data) override {
    if (data.size() < nri::ttrpc::kHeaderSize) abort();
    return absl::OkStatus();
  }
  void Close() override {}
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  knd::fuzz::Input in(data, size);
  // Read sizes: the runtime's writes and our reads never line up with frames.
  const size_t chunk = 1 + in.Byte() % 64;
  std::string_view bytes = in.Rest();

  Sink sink;
  nri::ttrpc::Server server(&sink);
  nri::ttrpc::Client client(&sink);
  nri::MuxDecoder mux;
  for (size_t at = 0; at < bytes.size(); at += chunk) {
    mux.Feed(bytes.substr(at, chunk));
    for (;;) {
      absl::StatusOr<std::optional<nri::MuxFrame>> f = mux.Next();
      if (!f.ok()) {
        server.Shutdown();
        return 0;  // a corrupt trunk is closed
      }
      if (!f->has_value()) break;
      if ((*f)->payload.size() > nri::kMuxMaxReadFrame) abort();
      if ((*f)->conn_id == nri::kPluginServiceConn) server.OnData((*f)->payload);
      if ((*f)->conn_id == nri::kRuntimeServiceConn) client.OnData((*f)->payload);
    }
  }
  // The ttrpc decoder alone, on the same bytes, in other cuts.
  nri::ttrpc::FrameDecoder frames;
  for (size_t at = 0; at < bytes.size(); at += chunk + 7) {
    frames.Feed(bytes.substr(at, chunk + 7));
    while (std::optional<nri::ttrpc::Frame> f = frames.Next()) {
      if (f->payload.size() > nri::ttrpc::kMaxMessageSize) abort();
    }
  }
  server.Shutdown();
  client.OnClosed();
  return 0;
}
