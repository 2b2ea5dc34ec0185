//===- Json.cpp - checked access to tokenizer.json fields ----------------===//
#include "Json.h"

namespace qrt::tok {

const char *jsonTypeName(const Json &j) {
  switch (j.type()) {
  case Json::value_t::null: return "null";
  case Json::value_t::object: return "an object";
  case Json::value_t::array: return "an array";
  case Json::value_t::string: return "a string";
  case Json::value_t::boolean: return "a boolean";
  case Json::value_t::number_integer:
  case Json::value_t::number_unsigned: return "an integer";
  case Json::value_t::number_float: return "a number";
  default: return "an unsupported value";
  }
}

static std::string sub(const std::string &path, const char *key) {
  return path + "." + key;
}

const Json *field(const Json &obj, const char *key, const std::string &path) {
  if (!obj.is_object())
    throw LoadError(path + " must be an object, found " + jsonTypeName(obj));
  auto it = obj.find(key);
  return it == obj.end() ? nullptr : &*it;
}

std::string getString(const Json &obj, const char *key,
                      const std::string &path) {
  const Json *v = field(obj, key, path);
  if (!v)
    throw LoadError(sub(path, key) + " is missing");
  if (!v->is_string())
    throw LoadError(sub(path, key) + " must be a string, found " +
                    jsonTypeName(*v));
  return v->get<std::string>();
}

std::string getStringOr(const Json &obj, const char *key,
                        const std::string &path, const std::string &dflt) {
  const Json *v = field(obj, key, path);
  if (!v || v->is_null())
    return dflt;
  if (!v->is_string())
    throw LoadError(sub(path, key) + " must be a string, found " +
                    jsonTypeName(*v));
  return v->get<std::string>();
}

bool getBoolOr(const Json &obj, const char *key, const std::string &path,
               bool dflt) {
  const Json *v = field(obj, key, path);
  if (!v || v->is_null())
    return dflt;
  if (!v->is_boolean())
    throw LoadError(sub(path, key) + " must be true or false, found " +
                    jsonTypeName(*v));
  return v->get<bool>();
}

int64_t asInt(const Json &v, const std::string &path, int64_t lo,
              int64_t hi) {
  int64_t x;
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (u > uint64_t(hi))
      throw LoadError(path + " = " + std::to_string(u) + " is out of range [" +
                      std::to_string(lo) + ", " + std::to_string(hi) + "]");
    x = int64_t(u);
  } else if (v.is_number_integer()) {
    x = v.get<int64_t>();
  } else {
    throw LoadError(path + " must be an integer, found " + jsonTypeName(v));
  }
  if (x < lo || x > hi)
    throw LoadError(path + " = " + std::to_string(x) + " is out of range [" +
                    std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return x;
}

int64_t getIntOr(const Json &obj, const char *key, const std::string &path,
                 int64_t lo, int64_t hi, int64_t dflt) {
  const Json *v = field(obj, key, path);
  if (!v || v->is_null())
    return dflt;
  return asInt(*v, sub(path, key), lo, hi);
}

int64_t getInt(const Json &obj, const char *key, const std::string &path,
               int64_t lo, int64_t hi) {
  const Json *v = field(obj, key, path);
  if (!v)
    throw LoadError(sub(path, key) + " is missing");
  return asInt(*v, sub(path, key), lo, hi);
}

const Json &getArray(const Json &obj, const char *key,
                     const std::string &path) {
  const Json *v = field(obj, key, path);
  if (!v)
    throw LoadError(sub(path, key) + " is missing");
  if (!v->is_array())
    throw LoadError(sub(path, key) + " must be an array, found " +
                    jsonTypeName(*v));
  return *v;
}

std::string getType(const Json &obj, const std::string &path) {
  return getString(obj, "type", path);
}

} // namespace qrt::tok
