// Compiles the test contracts into contracts.json (ABI + bytecode), offline, with solc-js, and
// adds Permit2's published runtime bytecode, taken from npm's @uniswap/v4-periphery 1.0.3
// (lib/permit2/test/utils/DeployPermit2.sol, the code Uniswap etches at Permit2's address):
//   npm install --prefix /tmp/solc solc@0.8.37
//   (cd /tmp && npm pack @uniswap/v4-periphery@1.0.3 && tar xzf uniswap-v4-periphery-1.0.3.tgz)
//   V4_PERIPHERY=/tmp/package NODE_PATH=/tmp/solc/node_modules node tests/support/chain/compile.js
// The EVM version is shanghai: py-evm (eth-tester) and ganache both run it. Contracts placed in
// the chain's genesis state (no constructor) are used by their `runtime` code.
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const here = __dirname;
const PERMIT2_ADDRESS = "0x000000000022D473030F116dDEE9F6B43aC78BA3";

function permit2Runtime() {
  const root = process.env.V4_PERIPHERY;
  if (!root) {
    console.error("set V4_PERIPHERY to the unpacked @uniswap/v4-periphery@1.0.3 package");
    process.exit(1);
  }
  const manifest = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8"));
  if (manifest.name !== "@uniswap/v4-periphery" || manifest.version !== "1.0.3") {
    console.error(`expected @uniswap/v4-periphery 1.0.3, found ${manifest.name} ${manifest.version}`);
    process.exit(1);
  }
  const file = path.join(root, "lib/permit2/test/utils/DeployPermit2.sol");
  const text = fs.readFileSync(file, "utf8");
  const literals = [...text.matchAll(/hex"([0-9a-fA-F]+)"/g)];
  if (literals.length !== 1 || !text.includes(PERMIT2_ADDRESS)) {
    console.error(`${file}: expected one hex literal etched at ${PERMIT2_ADDRESS}`);
    process.exit(1);
  }
  return "0x" + literals[0][1].toLowerCase();
}

// The part of Permit2's interface the tests call, and its errors (to decode reverts).
const PERMIT2_ABI = [
  {
    type: "function",
    name: "nonceBitmap",
    stateMutability: "view",
    inputs: [
      { name: "owner", type: "address" },
      { name: "wordPos", type: "uint256" },
    ],
    outputs: [{ name: "", type: "uint256" }],
  },
  {
    type: "function",
    name: "DOMAIN_SEPARATOR",
    stateMutability: "view",
    inputs: [],
    outputs: [{ name: "", type: "bytes32" }],
  },
  { type: "error", name: "InvalidNonce", inputs: [] },
  { type: "error", name: "InvalidSigner", inputs: [] },
  { type: "error", name: "InvalidSignature", inputs: [] },
  { type: "error", name: "InvalidSignatureLength", inputs: [] },
  { type: "error", name: "InvalidContractSignature", inputs: [] },
  { type: "error", name: "SignatureExpired", inputs: [{ name: "signatureDeadline", type: "uint256" }] },
  { type: "error", name: "InvalidAmount", inputs: [{ name: "maxAmount", type: "uint256" }] },
];

const sources = {};
for (const file of ["TestUSDC.sol", "SanctionsOracle.sol", "X402UptoPermit2Proxy.sol"]) {
  sources[file] = { content: fs.readFileSync(path.join(here, file), "utf8") };
}
const input = {
  language: "Solidity",
  sources,
  settings: {
    evmVersion: "shanghai",
    optimizer: { enabled: true, runs: 200 },
    outputSelection: {
      "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] },
    },
  },
};
const permit2 = permit2Runtime();
const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((e) => e.severity === "error");
if (errors.length) {
  for (const e of errors) console.error(e.formattedMessage);
  process.exit(1);
}
const contracts = { compiler: solc.version(), evmVersion: input.settings.evmVersion };
for (const [file, byName] of Object.entries(output.contracts)) {
  for (const [name, contract] of Object.entries(byName)) {
    if (contract.evm.bytecode.object === "") continue; // interfaces
    contracts[name] = {
      abi: contract.abi,
      bytecode: "0x" + contract.evm.bytecode.object,
      runtime: "0x" + contract.evm.deployedBytecode.object,
    };
  }
}
contracts.Permit2 = {
  source: "npm @uniswap/v4-periphery@1.0.3 lib/permit2/test/utils/DeployPermit2.sol",
  abi: PERMIT2_ABI,
  runtime: permit2,
};
fs.writeFileSync(path.join(here, "contracts.json"), JSON.stringify(contracts, null, 1) + "\n");
console.log("wrote contracts.json:", Object.keys(contracts).join(", "));
