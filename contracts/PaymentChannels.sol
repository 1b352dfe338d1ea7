// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IERC20} from "./lib/IERC20.sol";
import {ReentrancyGuard} from "./lib/ReentrancyGuard.sol";
import {Signatures} from "./lib/Signatures.sol";
import {TokenTransfers} from "./lib/TokenTransfers.sol";

/// @title PaymentChannels
/// @notice Unidirectional ERC-20 payment channels from a client to a provider. The client signs
/// EIP-712 vouchers `{channelId, cumulativeAmount}`; the provider settles any voucher and receives
/// the difference to what it settled before. The client closes in two steps: request, then
/// withdraw the rest after the channel's challenge period, during which the provider can still
/// settle. Nothing is ever paid out beyond the deposits.
contract PaymentChannels is ReentrancyGuard {
    using TokenTransfers for IERC20;

    /// @notice One channel. `settled` never exceeds `deposit`.
    struct Channel {
        address client;
        uint64 challengePeriod;
        address provider;
        uint64 closeRequestedAt;
        bool finalized;
        IERC20 token;
        uint128 deposit;
        uint128 settled;
    }

    bytes32 public constant VOUCHER_TYPEHASH = keccak256("Voucher(bytes32 channelId,uint256 cumulativeAmount)");
    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant NAME_HASH = keccak256("Mycel PaymentChannels");
    bytes32 private constant VERSION_HASH = keccak256("1");

    uint64 public immutable minChallengePeriod;
    uint64 public immutable maxChallengePeriod;
    uint256 public channelCount;

    mapping(bytes32 channelId => Channel) private channels;
    mapping(address client => bytes32[]) private clientChannels;
    mapping(address provider => bytes32[]) private providerChannels;

    event ChannelOpened(
        bytes32 indexed channelId,
        address indexed client,
        address indexed provider,
        address token,
        uint256 deposit,
        uint64 challengePeriod
    );
    event ChannelToppedUp(bytes32 indexed channelId, uint256 amount, uint256 deposit);
    event ChannelSettled(bytes32 indexed channelId, uint256 cumulativeAmount, uint256 paid);
    event CloseRequested(bytes32 indexed channelId, uint64 closesAt);
    event ChannelWithdrawn(bytes32 indexed channelId, uint256 refunded);

    /// @notice No channel has this id.
    error UnknownChannel(bytes32 channelId);
    /// @notice Only the channel's client may do this.
    error NotClient(bytes32 channelId, address client);
    /// @notice Only the channel's provider may settle.
    error NotProvider(bytes32 channelId, address provider);
    /// @notice The client withdrew: the channel is over.
    error ChannelFinalized(bytes32 channelId);
    /// @notice The client asked to close: no more top-ups.
    error ChannelClosing(bytes32 channelId, uint64 closesAt);
    /// @notice The client has not asked to close yet.
    error CloseNotRequested(bytes32 channelId);
    /// @notice The close was requested already.
    error CloseAlreadyRequested(bytes32 channelId, uint64 closesAt);
    /// @notice The challenge period ends at `closesAt`.
    error ChallengePeriodActive(bytes32 channelId, uint64 closesAt);
    /// @notice A voucher must exceed what was settled (replayed or lower vouchers are refused).
    error VoucherNotAboveSettled(bytes32 channelId, uint256 cumulativeAmount, uint256 settled);
    /// @notice Everything deposited is settled already.
    error DepositExhausted(bytes32 channelId, uint256 deposit);
    /// @notice The voucher was not signed by the channel's client.
    error InvalidVoucherSignature(bytes32 channelId, address signer);
    /// @notice The challenge period is outside the contract's bounds.
    error InvalidChallengePeriod(uint64 challengePeriod, uint64 minimum, uint64 maximum);
    /// @notice The provider is the zero address or the client itself.
    error InvalidProvider(address provider);
    /// @notice Amounts must be positive and fit in 128 bits.
    error InvalidAmount(uint256 amount);

    constructor(uint64 minChallengePeriod_, uint64 maxChallengePeriod_) {
        if (minChallengePeriod_ > maxChallengePeriod_ || maxChallengePeriod_ == 0) {
            revert InvalidChallengePeriod(minChallengePeriod_, minChallengePeriod_, maxChallengePeriod_);
        }
        minChallengePeriod = minChallengePeriod_;
        maxChallengePeriod = maxChallengePeriod_;
    }

    /// @notice Opens a channel from the sender to `provider` with `amount` of `token` (approved beforehand).
    function open(address provider, IERC20 token, uint256 amount, uint64 challengePeriod)
        external
        nonReentrant
        returns (bytes32 channelId)
    {
        if (provider == address(0) || provider == msg.sender) revert InvalidProvider(provider);
        if (challengePeriod < minChallengePeriod || challengePeriod > maxChallengePeriod) {
            revert InvalidChallengePeriod(challengePeriod, minChallengePeriod, maxChallengePeriod);
        }
        if (amount == 0 || amount > type(uint128).max) revert InvalidAmount(amount);
        channelId = keccak256(abi.encode(block.chainid, address(this), channelCount++));
        uint256 received = token.pull(msg.sender, amount);
        channels[channelId] = Channel({
            client: msg.sender,
            challengePeriod: challengePeriod,
            provider: provider,
            closeRequestedAt: 0,
            finalized: false,
            token: token,
            deposit: uint128(received),
            settled: 0
        });
        clientChannels[msg.sender].push(channelId);
        providerChannels[provider].push(channelId);
        emit ChannelOpened(channelId, msg.sender, provider, address(token), received, challengePeriod);
    }

    /// @notice Adds `amount` to an open channel's deposit; client only, not while closing.
    function topUp(bytes32 channelId, uint256 amount) external nonReentrant {
        Channel storage channel = _channel(channelId);
        if (msg.sender != channel.client) revert NotClient(channelId, channel.client);
        if (channel.finalized) revert ChannelFinalized(channelId);
        if (channel.closeRequestedAt != 0) {
            revert ChannelClosing(channelId, channel.closeRequestedAt + channel.challengePeriod);
        }
        if (amount == 0 || amount > type(uint128).max) revert InvalidAmount(amount);
        uint256 received = channel.token.pull(msg.sender, amount);
        uint256 deposit = uint256(channel.deposit) + received;
        if (deposit > type(uint128).max) revert InvalidAmount(deposit);
        channel.deposit = uint128(deposit);
        emit ChannelToppedUp(channelId, received, deposit);
    }

    /// @notice Pays the provider what the client's voucher adds to what was settled, capped at the
    /// deposit; provider only, until the client withdraws.
    function settle(bytes32 channelId, uint256 cumulativeAmount, bytes calldata signature)
        external
        nonReentrant
        returns (uint256 paid)
    {
        Channel storage channel = _channel(channelId);
        if (msg.sender != channel.provider) revert NotProvider(channelId, channel.provider);
        if (channel.finalized) revert ChannelFinalized(channelId);
        uint256 settled = channel.settled;
        if (cumulativeAmount <= settled) revert VoucherNotAboveSettled(channelId, cumulativeAmount, settled);
        uint256 deposit = channel.deposit;
        if (settled == deposit) revert DepositExhausted(channelId, deposit);
        address signer = Signatures.recover(voucherDigest(channelId, cumulativeAmount), signature);
        if (signer != channel.client) revert InvalidVoucherSignature(channelId, signer);
        uint256 newSettled = cumulativeAmount < deposit ? cumulativeAmount : deposit;
        paid = newSettled - settled;
        channel.settled = uint128(newSettled);
        channel.token.send(channel.provider, paid);
        emit ChannelSettled(channelId, cumulativeAmount, paid);
    }

    /// @notice Starts the challenge period; client only.
    function requestClose(bytes32 channelId) external {
        Channel storage channel = _channel(channelId);
        if (msg.sender != channel.client) revert NotClient(channelId, channel.client);
        if (channel.finalized) revert ChannelFinalized(channelId);
        if (channel.closeRequestedAt != 0) {
            revert CloseAlreadyRequested(channelId, channel.closeRequestedAt + channel.challengePeriod);
        }
        channel.closeRequestedAt = uint64(block.timestamp);
        emit CloseRequested(channelId, uint64(block.timestamp) + channel.challengePeriod);
    }

    /// @notice After the challenge period, returns the unsettled deposit to the client and ends the channel.
    function withdraw(bytes32 channelId) external nonReentrant returns (uint256 refunded) {
        Channel storage channel = _channel(channelId);
        if (msg.sender != channel.client) revert NotClient(channelId, channel.client);
        if (channel.finalized) revert ChannelFinalized(channelId);
        if (channel.closeRequestedAt == 0) revert CloseNotRequested(channelId);
        uint64 closesAt = channel.closeRequestedAt + channel.challengePeriod;
        if (block.timestamp < closesAt) revert ChallengePeriodActive(channelId, closesAt);
        channel.finalized = true;
        refunded = uint256(channel.deposit) - channel.settled;
        channel.token.send(channel.client, refunded);
        emit ChannelWithdrawn(channelId, refunded);
    }

    /// @notice A channel by id.
    function getChannel(bytes32 channelId) external view returns (Channel memory) {
        return _channel(channelId);
    }

    /// @notice The ids of the channels a client opened.
    function channelsOfClient(address client) external view returns (bytes32[] memory) {
        return clientChannels[client];
    }

    /// @notice The ids of the channels opened to a provider.
    function channelsOfProvider(address provider) external view returns (bytes32[] memory) {
        return providerChannels[provider];
    }

    /// @notice The EIP-712 domain separator (name "Mycel PaymentChannels", version "1", this chain, this contract).
    function domainSeparator() public view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, block.chainid, address(this)));
    }

    /// @notice The EIP-712 digest a client signs for a voucher.
    function voucherDigest(bytes32 channelId, uint256 cumulativeAmount) public view returns (bytes32) {
        bytes32 structHash = keccak256(abi.encode(VOUCHER_TYPEHASH, channelId, cumulativeAmount));
        return keccak256(abi.encodePacked("\x19\x01", domainSeparator(), structHash));
    }

    function _channel(bytes32 channelId) private view returns (Channel storage channel) {
        channel = channels[channelId];
        if (channel.client == address(0)) revert UnknownChannel(channelId);
    }
}
