//===- HFImporter.cpp - Hugging Face directories -> QLLM --------------===//
//
// config.json gives the hyper-parameters; the safetensors files give the
// tensors, memory-mapped under the names transformers uses. The weights
// are found the way transformers looks for them: model.safetensors, else
// model.safetensors.index.json and its shards, else a lone *.safetensors.
// The canonical builder then checks every tensor against the config.
//
// Everything is loaded into a scratch store first, so the caller's store
// is only touched on success, and only with the tensors the module uses
// (extras such as rotary_emb.inv_freq, or lm_head.weight of a tied model,
// are dropped).
//
//===----------------------------------------------------------------------===//
#include "qopt/Import/HFImporter.h"

#include "BoundedJSON.h"
#include "qopt/Dialect/QLLM/QLLMOps.h"
#include "qopt/Import/DecoderBuilder.h"
#include "qopt/Import/SafeTensors.h"

#include "llvm/ADT/StringMap.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"

#include <map>
#include <set>

using namespace mlir;

namespace qopt {

namespace {

std::string join(const std::string &dir, const std::string &file) {
  llvm::SmallString<256> p(dir);
  llvm::sys::path::append(p, file);
  return std::string(p);
}

/// The shard files named by model.safetensors.index.json, in sorted order,
/// plus the tensor -> shard map for a consistency check after loading.
bool readIndex(const std::string &dir, const std::string &indexPath,
               std::vector<std::string> *shards, std::map<std::string, std::string> *weightMap,
               std::string *error) {
  // An index lists each tensor once: a few hundred KB even for 400B models.
  std::optional<llvm::json::Value> v = readBoundedJSONFile(indexPath, 64u << 20, error);
  if (!v)
    return false;
  const llvm::json::Object *o = v->getAsObject();
  const llvm::json::Object *wm = o ? o->getObject("weight_map") : nullptr;
  if (!wm) {
    *error = indexPath + ": no 'weight_map' object";
    return false;
  }
  std::set<std::string> unique;
  for (const auto &kv : *wm) {
    std::optional<llvm::StringRef> file = kv.second.getAsString();
    if (!file) {
      *error = indexPath + ": weight_map entry '" + kv.first.str() + "' is not a file name";
      return false;
    }
    // Shards must sit in the model directory: no paths out of it.
    if (file->empty() || file->contains('/') || file->contains('\\') || *file == "." ||
        *file == "..") {
      *error = indexPath + ": shard name '" + file->str() +
               "' is not a plain file name in the model directory";
      return false;
    }
    unique.insert(file->str());
    (*weightMap)[kv.first.str()] = file->str();
  }
  if (unique.empty()) {
    *error = indexPath + ": 'weight_map' is empty";
    return false;
  }
  for (const std::string &s : unique) {
    std::string path = join(dir, s);
    if (!llvm::sys::fs::exists(path)) {
      *error = indexPath + ": shard '" + s + "' is missing from " + dir;
      return false;
    }
    shards->push_back(path);
  }
  return true;
}

/// Finds the weight files of `dir`.
bool findWeightFiles(const std::string &dir, std::vector<std::string> *files,
                     std::map<std::string, std::string> *weightMap, std::string *indexPath,
                     std::string *error) {
  std::string single = join(dir, "model.safetensors");
  if (llvm::sys::fs::exists(single)) {
    files->push_back(single);
    return true;
  }
  std::string index = join(dir, "model.safetensors.index.json");
  if (llvm::sys::fs::exists(index)) {
    *indexPath = index;
    return readIndex(dir, index, files, weightMap, error);
  }
  std::vector<std::string> found;
  bool hasBin = false;
  std::error_code ec;
  for (llvm::sys::fs::directory_iterator it(dir, ec), end; it != end && !ec; it.increment(ec)) {
    llvm::StringRef name = llvm::sys::path::filename(it->path());
    if (name.ends_with(".safetensors"))
      found.push_back(it->path());
    if (name.ends_with(".bin") || name.ends_with(".pt") || name.ends_with(".pth"))
      hasBin = true;
  }
  std::sort(found.begin(), found.end());
  if (found.size() == 1) {
    files->push_back(found[0]);
    return true;
  }
  if (found.size() > 1) {
    *error = dir + ": " + std::to_string(found.size()) +
             " .safetensors files but no model.safetensors.index.json to say which to use";
    return false;
  }
  *error = dir + ": no model.safetensors or model.safetensors.index.json" +
           (hasBin ? std::string(" (PyTorch .bin/.pt weights are not supported: convert them "
                                 "to safetensors)")
                   : std::string());
  return false;
}

/// bos/eos from generation_config.json when config.json lacks them.
void readGenerationConfig(const std::string &dir, ModelConfig *c) {
  std::string path = join(dir, "generation_config.json");
  if ((c->bosTokenId && c->eosTokenId) || !llvm::sys::fs::exists(path))
    return;
  std::string ignored;
  std::optional<llvm::json::Value> v = readBoundedJSONFile(path, 1u << 20, &ignored);
  const llvm::json::Object *o = v ? v->getAsObject() : nullptr;
  if (!o)
    return; // informational only: a broken generation config is not fatal
  auto id = [&](llvm::StringRef key) -> std::optional<int64_t> {
    const llvm::json::Value *x = o->get(key);
    if (x && x->getAsArray() && !x->getAsArray()->empty())
      x = &(*x->getAsArray())[0];
    std::optional<int64_t> i = x ? x->getAsInteger() : std::nullopt;
    if (i && *i >= 0 && *i < c->vocabSize)
      return i;
    return std::nullopt;
  };
  if (!c->bosTokenId)
    c->bosTokenId = id("bos_token_id");
  if (!c->eosTokenId)
    c->eosTokenId = id("eos_token_id");
}

} // namespace

OwningOpRef<ModuleOp> importHuggingFaceDir(MLIRContext &ctx, const std::string &dirArg,
                                           WeightStore &store, std::string *error) {
  std::string dir = dirArg;
  while (dir.size() > 1 && dir.back() == '/')
    dir.pop_back();
  if (!llvm::sys::fs::exists(dir)) {
    *error = dir + ": no such directory";
    return {};
  }
  if (!llvm::sys::fs::is_directory(dir)) {
    *error = dir + ": not a directory (expected a Hugging Face model directory)";
    return {};
  }
  std::string configPath = join(dir, "config.json");
  if (!llvm::sys::fs::exists(configPath)) {
    *error = dir + ": no config.json (not a Hugging Face model directory)";
    return {};
  }
  ModelConfig config;
  if (!parseHFConfig(configPath, &config, error))
    return {};
  readGenerationConfig(dir, &config);

  std::vector<std::string> files;
  std::map<std::string, std::string> weightMap;
  std::string indexPath;
  if (!findWeightFiles(dir, &files, &weightMap, &indexPath, error))
    return {};

  // Map every file; remember where each tensor came from.
  std::vector<SafeTensorsFile> opened(files.size());
  struct Origin {
    size_t file, tensor;
  };
  std::map<std::string, Origin> origin;
  WeightStore scratch;
  for (size_t f = 0; f < files.size(); ++f) {
    if (!openSafeTensors(files[f], &opened[f], error))
      return {};
    const SafeTensorsHeader &h = opened[f].header;
    for (size_t t = 0; t < h.tensors.size(); ++t) {
      const std::string &name = h.tensors[t].name;
      auto [it, inserted] = origin.emplace(name, Origin{f, t});
      if (!inserted) {
        *error = dir + ": tensor '" + name + "' appears in both " + files[it->second.file] +
                 " and " + files[f];
        return {};
      }
      if (!scratch.addMapped(opened[f].entry(t), opened[f].file, error))
        return {};
    }
  }
  for (const auto &[name, shard] : weightMap) {
    auto it = origin.find(name);
    if (it == origin.end() ||
        llvm::sys::path::filename(files[it->second.file]) != llvm::StringRef(shard)) {
      *error = indexPath + ": tensor '" + name + "' is listed in shard '" + shard +
               "' but is not in it";
      return {};
    }
  }
  if (!config.tieWordEmbeddings && !scratch.contains(names::lmHead())) {
    *error = dir + ": missing tensor '" + names::lmHead() +
             "' (config.json sets tie_word_embeddings to false)";
    return {};
  }

  OwningOpRef<ModuleOp> module = buildDecoderModule(ctx, config, scratch, dir, error);
  if (!module)
    return {};

  // Hand the caller exactly the tensors the module uses.
  std::set<std::string> used;
  module->walk([&](qllm::ParamOp p) { used.insert(p.getName().str()); });
  for (const std::string &name : used)
    if (store.contains(name)) {
      *error = dir + ": tensor '" + name + "' is already in the weight store";
      return {};
    }
  for (const std::string &name : used) {
    const Origin &o = origin.at(name);
    if (!store.addMapped(opened[o.file].entry(o.tensor), opened[o.file].file, error))
      return {};
  }
  return module;
}

} // namespace qopt
