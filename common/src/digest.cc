#include "greenfed/digest.h"

#include <openssl/evp.h>

#include <memory>

namespace greenfed {

StatusOr<std::string> Sha256Hex(const Parameters& params) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) return Internal("SHA-256 init failed");
  auto update = [&](const void* data, size_t n) { return EVP_DigestUpdate(ctx.get(), data, n) == 1; };
  for (const auto& p : params) {
    const uint64_t name_len = p.name.size();
    const uint8_t dtype = static_cast<uint8_t>(p.dtype);
    const uint64_t rank = p.shape.size();
    bool ok = update(&name_len, sizeof(name_len)) && update(p.name.data(), p.name.size()) &&
              update(&dtype, 1) && update(&rank, sizeof(rank)) &&
              update(p.shape.data(), p.shape.size() * sizeof(int64_t)) && update(p.data.data(), p.data.size());
    if (!ok) return Internal("SHA-256 update failed");
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx.get(), md, &len) != 1) return Internal("SHA-256 final failed");
  return HexOf(md, len);
}

std::string HexOf(const uint8_t* data, size_t size) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(size * 2);
  for (size_t i = 0; i < size; ++i) {
    hex += kHex[data[i] >> 4];
    hex += kHex[data[i] & 15];
  }
  return hex;
}

StatusOr<std::array<uint8_t, 32>> Sha256(const void* data, size_t size) {
  std::array<uint8_t, 32> md{};
  unsigned int len = 0;
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1 ||
      EVP_DigestUpdate(ctx.get(), data, size) != 1 || EVP_DigestFinal_ex(ctx.get(), md.data(), &len) != 1 ||
      len != md.size()) {
    return Internal("SHA-256 failed");
  }
  return md;
}

}  // namespace greenfed
